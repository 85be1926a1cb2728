package bench

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestSpanRateAndMedian(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if r := spanRate(71, t0, t0.Add(10*time.Second)); r != 7 {
		t.Fatalf("71 arrivals over 10 s: %v/s, want 7", r)
	}
	if spanRate(1, t0, t0) != 0 || spanRate(5, t0, t0) != 0 {
		t.Fatal("no span must give 0, not a division by zero")
	}
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Fatalf("median %v", m)
	}
	if i := best([]float64{2, 5, 3, 5}); i != 1 {
		t.Fatalf("best of [2 5 3 5]: index %d, want 1", i)
	}
}

func TestBulkSplitsIntoItsTwoScenarios(t *testing.T) {
	t.Parallel()
	got := splitBulk(Scenario{Name: "bulk", Value: 25000, Detail: map[string]any{"ratio": 0.7}})
	if len(got) != 2 || got[0].Name != "bulk_lines_per_s" || !got[0].OK || got[1].Name != "bulk_enqueue_ratio" || got[1].Value != 0.7 || got[1].OK {
		t.Fatalf("%+v", got)
	}
}

func TestReportWritesTheResultsFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b := &bench{out: dir, short: true}
	if err := b.report([]Scenario{{Name: "overhead_ratio", Value: 0.8, Target: 0.75, Unit: "ratio", OK: true, Detail: map[string]any{"tasks": 10}}}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Scenarios []Scenario     `json:"scenarios"`
		Machine   map[string]any `json:"machine"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Scenarios) != 1 || doc.Scenarios[0].Name != "overhead_ratio" || !doc.Scenarios[0].OK || doc.Machine["cpus"] == nil || doc.Machine["short"] != true {
		t.Fatalf("results.json: %s", raw)
	}
}
