package memo

import "testing"

// TestMapRemembersWithinItsBound: a stored value (nil included) comes back;
// past Max the map forgets and stays within the bound.
func TestMapRemembersWithinItsBound(t *testing.T) {
	t.Parallel()
	var m Map[string, error]
	if _, ok := m.Load("a"); ok {
		t.Fatal("an empty map found a value")
	}
	m.Store("a", nil)
	if v, ok := m.Load("a"); !ok || v != nil {
		t.Fatalf("stored nil, loaded %v %v", v, ok)
	}
	var n Map[int, int]
	for i := range Max + 10 {
		n.Store(i, i*2)
	}
	if v, ok := n.Load(Max + 9); !ok || v != 2*(Max+9) {
		t.Fatalf("the last value stored: %v %v", v, ok)
	}
	if l := n.Len(); l > Max {
		t.Fatalf("%d values held, bound %d", l, Max)
	}
}
