//! "Why did this customer get no email?" (SPEC §5): facts from the store, the answer
//! from the pure `why::explain`.

use super::{App, AppResult};
use crate::model::{EmailAddress, ProjectKey};
use crate::why::{WhyAnswer, explain};

impl App {
    /// The why answer for what someone typed: a valid address is looked up as itself
    /// (and in `project` when given); anything else is looked up as the raw input that
    /// was refused, so "we never sent because the address was invalid" is answered too.
    pub async fn why(&self, input: &str, project: Option<ProjectKey>) -> AppResult<WhyAnswer> {
        match EmailAddress::parse(input) {
            Ok(address) => {
                let facts = self
                    .store
                    .why_facts(address.as_str().to_owned(), true, project)
                    .await?;
                Ok(explain(address.as_str(), Some(&address), facts))
            }
            Err(_) => {
                let raw =
                    crate::model::truncate(input.trim(), crate::model::RAW_INPUT_LIMIT).to_owned();
                let facts = self.store.why_facts(raw.clone(), false, None).await?;
                Ok(explain(&raw, None, facts))
            }
        }
    }
}
