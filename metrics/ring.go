package metrics

// ringSet remembers the most recent keys, at most size of them: adding
// one more forgets the oldest. It is not safe for concurrent use.
type ringSet[K comparable] struct {
	slots []K
	at    map[K]int // key -> its slot
	next  int
	full  bool
}

func newRingSet[K comparable](size int) *ringSet[K] {
	return &ringSet[K]{slots: make([]K, size), at: make(map[K]int, size)}
}

// add remembers k and reports whether it was new.
func (r *ringSet[K]) add(k K) bool {
	if _, ok := r.at[k]; ok {
		return false
	}
	if r.full {
		// Forget the oldest, unless it was removed (and its slot is stale).
		old := r.slots[r.next]
		if i, ok := r.at[old]; ok && i == r.next {
			delete(r.at, old)
		}
	}
	r.slots[r.next] = k
	r.at[k] = r.next
	r.next++
	if r.next == len(r.slots) {
		r.next, r.full = 0, true
	}
	return true
}

// remove forgets k; its slot is reused in turn.
func (r *ringSet[K]) remove(k K) { delete(r.at, k) }

func (r *ringSet[K]) len() int { return len(r.at) }
