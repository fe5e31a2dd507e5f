//! A bounded map for a lane's write-through caches: when full, an arbitrary entry
//! makes room. Entries are only hints (every write is checked against the store),
//! so evicting the wrong one costs a store read, never correctness.

use std::collections::HashMap;

pub(crate) struct Bounded<V> {
    entries: HashMap<String, V, foldhash::fast::RandomState>,
    capacity: usize,
}

impl<V> Bounded<V> {
    pub fn new(capacity: usize) -> Self {
        Self { entries: HashMap::default(), capacity: capacity.max(1) }
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.entries.get(key)
    }

    pub fn insert(&mut self, key: String, value: V) {
        if self.entries.len() >= self.capacity
            && !self.entries.contains_key(&key)
            && let Some(victim) = self.entries.keys().next().cloned()
        {
            self.entries.remove(&victim);
        }
        self.entries.insert(key, value);
    }

    pub fn remove(&mut self, key: &str) {
        self.entries.remove(key);
    }

    pub fn take(&mut self, key: &str) -> Option<V> {
        self.entries.remove(key)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_at_most_its_capacity_and_keeps_the_newest() {
        let mut cache = Bounded::new(3);
        for i in 0..10 {
            cache.insert(format!("k{i}"), i);
            assert!(cache.len() <= 3);
            assert_eq!(cache.get(&format!("k{i}")), Some(&i));
        }
        cache.insert("k9".into(), 99);
        assert_eq!(cache.get("k9"), Some(&99));
        assert_eq!(cache.len(), 3);
        cache.remove("k9");
        assert_eq!(cache.get("k9"), None);
    }
}
