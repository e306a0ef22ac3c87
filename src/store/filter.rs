//! A WHERE clause built from optional filters (the decision and suppression lists).

use super::db::Param;

/// A WHERE clause built from optional filters, with numbered parameters.
#[derive(Default)]
pub(crate) struct Filter {
    clauses: Vec<String>,
    args: Vec<Box<dyn Param>>,
}

impl Filter {
    /// Adds `clause`, in which every `$` stands for `value`.
    pub(crate) fn push(&mut self, clause: &str, value: Box<dyn Param>) {
        self.args.push(value);
        self.clauses
            .push(clause.replace('$', &format!("?{}", self.args.len())));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.clauses.is_empty()
    }

    /// `WHERE a AND b`, or nothing.
    pub(crate) fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }

    /// The next parameter number.
    pub(crate) fn next_index(&self) -> usize {
        self.args.len() + 1
    }

    pub(crate) fn params(&self) -> Vec<&dyn Param> {
        self.args.iter().map(|b| b.as_ref()).collect()
    }

    pub(crate) fn push_value(&mut self, value: Box<dyn Param>) {
        self.args.push(value);
    }
}
