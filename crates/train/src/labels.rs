//! The experiment's classes, built once from the `labels` map of `dataset.json` (which
//! `plan.json` copies): what validation scores, `train_log.csv` has columns for, and
//! `summary.json` names.

use std::collections::BTreeMap;

/// Foreground classes (background 0 left out), by ascending id, with their names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClassLabels {
    foreground: Vec<(u16, String)>,
}

impl ClassLabels {
    /// From a `dataset.json` labels map (`{"background": 0, "liver": 1, ...}`).
    pub fn new(labels: &BTreeMap<String, u16>) -> Self {
        let mut foreground: Vec<(u16, String)> = labels
            .iter()
            .filter(|(_, id)| **id != 0)
            .map(|(name, id)| (*id, name.clone()))
            .collect();
        foreground.sort();
        Self { foreground }
    }

    /// Foreground ids, ascending.
    pub fn ids(&self) -> Vec<u16> {
        self.foreground.iter().map(|(id, _)| *id).collect()
    }

    /// The name of `id`, or the id as text when `dataset.json` does not declare it.
    pub fn name(&self, id: u16) -> String {
        self.foreground
            .iter()
            .find(|(l, _)| *l == id)
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| id.to_string())
    }

    /// `(id, name)` pairs, ascending by id.
    pub fn iter(&self) -> impl Iterator<Item = (u16, &str)> {
        self.foreground.iter().map(|(id, n)| (*id, n.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn background_is_left_out_and_ids_ascend() {
        let map: BTreeMap<String, u16> = [("background", 0), ("tumour", 2), ("liver", 1)]
            .into_iter()
            .map(|(n, id)| (n.to_string(), id))
            .collect();
        let labels = ClassLabels::new(&map);
        assert_eq!(labels.ids(), vec![1, 2]);
        let pairs: Vec<(u16, &str)> = labels.iter().collect();
        assert_eq!(pairs, vec![(1, "liver"), (2, "tumour")]);
        assert_eq!(labels.name(2), "tumour");
        assert_eq!(labels.name(7), "7");
    }
}
