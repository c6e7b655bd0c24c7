//! The worker's connection table: slots reused through a free list, a
//! count of live entries, and a serial that tells a slot's connections
//! apart (a timer or a resume entry for an earlier connection in the same
//! slot must not touch a later one).

/// A table of `T` indexed by slot.
pub(super) struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<usize>,
    live: usize,
    serial: u32,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            serial: 0,
        }
    }
}

impl<T> Slab<T> {
    /// Number of occupied slots.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Highest slot number plus one (occupied or not), for iteration.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// A fresh serial and the slot the next `insert` will use, so that the
    /// entry can be built (registered with the poller) before it is stored.
    pub fn vacant(&mut self) -> (usize, u32) {
        self.serial = self.serial.wrapping_add(1);
        let slot = match self.free.last() {
            Some(&s) => s,
            None => self.slots.len(),
        };
        (slot, self.serial)
    }

    /// Stores `value` in the slot `vacant` returned.
    pub fn insert(&mut self, slot: usize, value: T) {
        if self.free.last() == Some(&slot) {
            self.free.pop();
        } else {
            debug_assert_eq!(slot, self.slots.len());
            self.slots.push(None);
        }
        self.slots[slot] = Some(value);
        self.live += 1;
    }

    /// The entry in `slot`, if any.
    pub fn get(&self, slot: usize) -> Option<&T> {
        self.slots.get(slot).and_then(Option::as_ref)
    }

    /// The entry in `slot`, if any.
    pub fn get_mut(&mut self, slot: usize) -> Option<&mut T> {
        self.slots.get_mut(slot).and_then(Option::as_mut)
    }

    /// Takes the entry out to be consumed by a state transition; the slot
    /// stays reserved until `restore` or `release`.
    pub fn take(&mut self, slot: usize) -> Option<T> {
        self.slots.get_mut(slot).and_then(Option::take)
    }

    /// Puts back an entry taken with `take`.
    pub fn restore(&mut self, slot: usize, value: T) {
        self.slots[slot] = Some(value);
    }

    /// Frees a slot whose entry was taken with `take`.
    pub fn release(&mut self, slot: usize) {
        debug_assert!(self.slots[slot].is_none());
        self.free.push(slot);
        self.live -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_with_new_serials() {
        let mut s = Slab::default();
        let (a, sa) = s.vacant();
        s.insert(a, "a");
        let (b, _) = s.vacant();
        s.insert(b, "b");
        assert_eq!((a, b, s.len()), (0, 1, 2));
        assert_eq!(s.take(a), Some("a"));
        s.release(a);
        let (c, sc) = s.vacant();
        assert_eq!(c, a);
        assert_ne!(sc, sa);
        s.insert(c, "c");
        assert_eq!(s.get(0), Some(&"c"));
        let taken = s.take(1).unwrap();
        assert_eq!(s.len(), 2);
        s.restore(1, taken);
        assert_eq!(s.get(1), Some(&"b"));
        s.take(1);
        s.release(1);
        assert_eq!(s.len(), 1);
    }
}
