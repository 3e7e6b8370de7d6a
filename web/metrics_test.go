package web

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// documentedMetric is a row of the README's metrics table.
type documentedMetric struct {
	name, kind string // kind "" for a family of prefix name (go_*)
	labels     []string
}

// readmeMetrics parses the table that follows "<!-- metrics-table -->" in README.md.
func readmeMetrics(t *testing.T) []documentedMetric {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(b), "<!-- metrics-table -->\n")
	if !ok {
		t.Fatal("README.md has no <!-- metrics-table -->")
	}
	var rows []documentedMetric
	for i, line := range strings.Split(table, "\n") {
		if !strings.HasPrefix(line, "|") {
			break
		}
		if i < 2 {
			continue // the header and its rule
		}
		cells := strings.Split(line, "|")
		if len(cells) != 6 {
			t.Fatalf("README metrics row %q: want 4 cells", line)
		}
		m := documentedMetric{name: strings.Trim(cells[1], " `"), kind: strings.TrimSpace(cells[2])}
		for _, l := range strings.Split(cells[3], ",") {
			if l = strings.Trim(l, " `"); l != "" {
				m.labels = append(m.labels, l)
			}
		}
		rows = append(rows, m)
	}
	if len(rows) < 10 {
		t.Fatalf("README metrics table: %d rows", len(rows))
	}
	return rows
}

// TestMetricsDocumented scrapes /metrics of a billing host after traffic (a chat, a
// module's rejection) and holds it to the README's table both ways: every documented
// metric is served with its type and labels, and every metric served is documented.
func TestMetricsDocumented(t *testing.T) {
	b := newBilling(t, 1e9)
	tmpl := plugin(t, "prompt-template/c/prompt-template.wasm")
	reject := b.push(`{"abi_version":1,"model":"stories260K","pre":[{"module":"`+hashOf(tmpl)+`","config":{"on_existing":"reject"}}]}`, tmpl)
	if res := b.do("POST", "/p/"+reject+"/v1/chat/completions", billedKey, `{"messages":[{"role":"system","content":"x"},{"role":"user","content":"hi"}],"max_tokens":5}`); res.status != http.StatusForbidden {
		t.Fatalf("rejection: %d %s", res.status, res.body)
	}
	if res := b.signed(t, b.clientKey, "/v1/chat/completions", chatBody, nil); res.status != http.StatusOK {
		t.Fatalf("billed chat: %d %s", res.status, res.body)
	}
	res := b.do("GET", "/metrics", "", nil)
	if res.status != http.StatusOK {
		t.Fatalf("/metrics: %d", res.status)
	}
	families := parseExposition(t, string(res.body))

	documented := readmeMetrics(t)
	for _, d := range documented {
		if prefix, ok := strings.CutSuffix(d.name, "*"); ok {
			served := false
			for name := range families {
				served = served || strings.HasPrefix(name, prefix)
			}
			if !served {
				t.Errorf("README documents %s; /metrics has none", d.name)
			}
			continue
		}
		f, ok := families[d.name]
		if !ok {
			t.Errorf("README documents %s; /metrics does not serve it", d.name)
			continue
		}
		if f.kind != d.kind {
			t.Errorf("%s is a %s; README says %s", d.name, f.kind, d.kind)
		}
		for _, labels := range f.labels {
			slices.Sort(labels) // the exposition sorts them
			if !slices.Equal(labels, slices.Sorted(slices.Values(d.labels))) {
				t.Errorf("%s has labels %v; README says %v", d.name, labels, d.labels)
				break
			}
		}
	}
	for name := range families {
		if !slices.ContainsFunc(documented, func(d documentedMetric) bool {
			prefix, family := strings.CutSuffix(d.name, "*")
			return name == d.name || family && strings.HasPrefix(name, prefix)
		}) {
			t.Errorf("/metrics serves %s, which README's table does not document", name)
		}
	}
	// The traffic is counted.
	for _, want := range []string{
		`cocoon_billing_admissions_total{result="admitted"} 2`,
		`cocoon_billing_receipts_total{status="completed"} 1`,
		`cocoon_billing_receipts_total{status="failed"} 1`,
		`cocoon_module_failures_total{kind="rejected",stage="pre"} 1`,
		`cocoon_settlement_rounds_total{result="ok"} 0`,
		`cocoon_attestation_quotes_total{kind="pipeline",result="served"} 0`,
		`cocoon_pipelines 1`,
		`cocoon_module_time_seconds_count 1`, // the rejecting module's request
	} {
		if !strings.Contains(string(res.body), want+"\n") {
			t.Errorf("/metrics has no %q", want)
		}
	}
}

// family is a metric family of the text exposition format: its type and the label
// names of each of its samples (a histogram's from its _count samples).
type family struct {
	kind   string
	labels [][]string
}

// parseExposition reads Prometheus's text format: "# TYPE name kind" lines, and
// samples "name{label="value",...} number", whose label values may hold any character
// (a route's braces, escaped quotes).
func parseExposition(t *testing.T, text string) map[string]*family {
	t.Helper()
	families := map[string]*family{}
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, kind, _ := strings.Cut(rest, " ")
			families[name] = &family{kind: kind}
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, labelText, hasLabels := strings.Cut(line, "{")
		if !hasLabels {
			name, _, _ = strings.Cut(line, " ")
		}
		f := families[name]
		if f == nil && strings.HasSuffix(name, "_count") {
			if f = families[strings.TrimSuffix(name, "_count")]; f == nil || f.kind != "histogram" && f.kind != "summary" {
				continue
			}
		} else if f == nil {
			continue // a histogram's _bucket and _sum
		}
		var labels []string
		for hasLabels && labelText != "" && labelText[0] != '}' {
			key, after, ok := strings.Cut(labelText, "=\"")
			if !ok {
				t.Fatalf("sample %q: bad labels", line)
			}
			labels = append(labels, key)
			i := 0
			for ; i < len(after) && after[i] != '"'; i++ {
				if after[i] == '\\' {
					i++
				}
			}
			labelText = strings.TrimPrefix(after[min(i+1, len(after)):], ",")
		}
		f.labels = append(f.labels, labels)
	}
	return families
}
