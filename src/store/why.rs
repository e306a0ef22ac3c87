//! The facts behind `why`, read in one snapshot: the customer and its memberships, the
//! suppression, the site, the address's decisions with their attempts, its projects.

use super::db::{Db, OptionalExtension, params};
use super::projects::load_project;
use super::records::{
    DECISION_COLUMNS, DecisionRecord, SUPPRESSION_COLUMNS, SuppressionRecord, decision_from_row,
    suppression_from_row,
};
use super::site::load_site;
use super::time::format_time;
use super::{Store, StoreError};
use crate::model::{Channel, Project, ProjectKey, Site};
use serde::Serialize;

/// Everything `why` needs about one address, read in one snapshot.
#[derive(Clone, Debug)]
pub struct WhyFacts {
    pub customer: Option<CustomerView>,
    pub suppression: Option<SuppressionRecord>,
    pub site: Site,
    /// Newest first, each with its attempts.
    pub decisions: Vec<DecisionRecord>,
    /// The customer's projects, plus the one named in the query.
    pub projects: Vec<Project>,
}

/// A customer as `why` shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CustomerView {
    pub id: String,
    pub email: String,
    pub display_name: Option<String>,
    pub created_at: String,
    pub created_via: Channel,
    pub projects: Vec<Membership>,
}

/// A customer's membership of a project.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Membership {
    pub key: String,
    pub added_at: String,
    pub added_via: Channel,
}

impl Store {
    /// The facts behind `why`: customer, memberships, suppression, site, decisions.
    /// `key` is a normalized address, or a raw input for addresses that never parsed.
    pub async fn why_facts(
        &self,
        key: String,
        valid: bool,
        project: Option<ProjectKey>,
    ) -> Result<WhyFacts, StoreError> {
        self.read(move |conn| {
            // One snapshot: customer, suppression and decisions agree with each other.
            conn.begin_snapshot()?;
            let facts = why_tx(conn, &key, valid, project.as_ref());
            match &facts {
                Ok(_) => conn.commit()?,
                Err(_) => conn.rollback()?,
            }
            facts
        })
        .await
    }
}

fn why_tx(
    conn: &Db,
    key: &str,
    valid: bool,
    project: Option<&ProjectKey>,
) -> Result<WhyFacts, StoreError> {
    let site = load_site(conn)?;
    let customer = if valid {
        customer_view(conn, key)?
    } else {
        None
    };
    let suppression = if valid {
        conn.prepare_cached(&format!(
            "SELECT {SUPPRESSION_COLUMNS} FROM suppressions WHERE email = ?1"
        ))?
        .query_row(params![key], suppression_from_row)
        .optional()?
    } else {
        None
    };
    let sql = if valid {
        format!(
            "SELECT {DECISION_COLUMNS} FROM decisions WHERE recipient = ?1 ORDER BY seq DESC LIMIT 50"
        )
    } else {
        format!(
            "SELECT {DECISION_COLUMNS} FROM decisions WHERE recipient IS NULL AND input = ?1 ORDER BY seq DESC LIMIT 50"
        )
    };
    let mut decisions = conn
        .prepare_cached(&sql)?
        .query_map(params![key], decision_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    for decision in &mut decisions {
        decision.attempts = Some(super::delivery::attempts_of(conn, &decision.id)?);
    }
    let mut keys: Vec<String> = customer
        .as_ref()
        .map(|c| c.projects.iter().map(|m| m.key.clone()).collect())
        .unwrap_or_default();
    if let Some(p) = project
        && !keys.iter().any(|k| k == p.as_str())
    {
        keys.push(p.to_string());
    }
    let mut projects = Vec::new();
    for key in keys {
        match load_project(conn, &key) {
            Ok(p) => projects.push(p),
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(WhyFacts {
        customer,
        suppression,
        site,
        decisions,
        projects,
    })
}

fn customer_view(conn: &Db, email: &str) -> Result<Option<CustomerView>, StoreError> {
    let row = conn
        .prepare_cached("SELECT id, email, display_name, created_at, created_via FROM customers WHERE email = ?1")?
        .query_row(params![email], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?, r.get::<_, i64>(3)?, r.get::<_, String>(4)?))
        })
        .optional()?;
    let Some((id, email, display_name, created_at, via)) = row else {
        return Ok(None);
    };
    let projects = conn
        .prepare_cached("SELECT project, added_at, added_via FROM memberships WHERE customer_id = ?1 ORDER BY added_at")?
        .query_map(params![&id], |r| {
            Ok(Membership {
                key: r.get(0)?,
                added_at: format_time(r.get(1)?),
                added_via: r.get::<_, String>(2)?.parse().unwrap_or(Channel::Agent),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(CustomerView {
        id,
        email,
        display_name,
        created_at: format_time(created_at),
        created_via: via.parse().unwrap_or(Channel::Agent),
        projects,
    }))
}
