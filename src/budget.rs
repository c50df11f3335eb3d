//! A shared byte budget: how much memory the reviews in flight may hold at once (their request
//! bodies and the trees decoded from them). A review reserves what it needs as it reads and
//! decodes, and gives it back when its answer is sent ([`Reservation`] releases on drop); a
//! review that does not fit is refused (HTTP 429) instead of growing the process. A leaf module:
//! the server reserves body bytes, the decoder (`resource`) reserves decoded bytes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes the reviews in flight may hold together.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    used: AtomicUsize,
}

impl Budget {
    pub fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// The budget's size.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Take `n` bytes if they fit.
    fn take(&self, n: usize) -> bool {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            let Some(next) = cur.checked_add(n).filter(|&v| v <= self.limit) else {
                return false;
            };
            match self
                .used
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => cur = seen,
            }
        }
    }

    /// An empty reservation on this budget, to grow as a review reads and decodes.
    pub(crate) fn reserve(self: &Arc<Self>) -> Reservation {
        Reservation {
            budget: Some(self.clone()),
            bytes: 0,
        }
    }
}

/// Bytes held from a [`Budget`] by one review; released when dropped. A reservation without a
/// budget (`Reservation::unbounded`) grows without limit, for callers that run no server.
#[derive(Debug, Default)]
pub struct Reservation {
    budget: Option<Arc<Budget>>,
    bytes: usize,
}

impl Reservation {
    /// A reservation on no budget: every `grow` succeeds.
    pub fn unbounded() -> Reservation {
        Reservation::default()
    }

    /// Hold `n` more bytes; `false` (and nothing taken) when the budget has no room.
    pub(crate) fn grow(&mut self, n: usize) -> bool {
        if let Some(b) = &self.budget {
            if !b.take(n) {
                return false;
            }
        }
        self.bytes += n;
        true
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Move what `other` holds into this reservation (same budget, or `other` unbounded).
    pub fn absorb(&mut self, mut other: Reservation) {
        match (&self.budget, other.budget.take()) {
            (Some(a), Some(b)) if !Arc::ptr_eq(a, &b) => {
                // Different budgets: give `other`'s bytes back to their own.
                b.used.fetch_sub(other.bytes, Ordering::AcqRel);
            }
            (None, Some(b)) => {
                // This reservation is unbounded (its bytes are charged nowhere): hold `other`'s
                // bytes on `other`'s budget instead.
                self.budget = Some(b);
                self.bytes = other.bytes;
            }
            _ => self.bytes += other.bytes,
        }
        other.bytes = 0;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(b) = &self.budget {
            b.used.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_take_and_give_back() {
        let b = Budget::new(100);
        let mut r = b.reserve();
        assert!(r.grow(60));
        let mut s = b.reserve();
        assert!(!s.grow(41), "over the limit");
        assert!(s.grow(40));
        assert_eq!(b.used(), 100);
        drop(r);
        assert_eq!(b.used(), 40);
        let mut t = b.reserve();
        assert!(t.grow(10));
        s.absorb(t);
        assert_eq!((s.bytes(), b.used()), (50, 50));
        drop(s);
        assert_eq!(b.used(), 0);
        let mut u = Reservation::unbounded();
        assert!(u.grow(usize::MAX / 2));
        let mut v = b.reserve();
        assert!(v.grow(5));
        u.absorb(v);
        assert_eq!((b.used(), u.bytes()), (5, 5));
        drop(u);
        assert_eq!(
            b.used(),
            0,
            "an unbounded reservation that absorbed one gives it back"
        );
    }
}
