package attest

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/cocoonhost/cocoon/attest/nvidia"
)

// Check is one line of a verification report.
type Check struct {
	// Name says what was checked, such as "quote signature chain" or "MRTD".
	Name string
	// OK is false when the check failed: the evidence must not be trusted.
	OK bool
	// Skipped is set (with OK) when nothing was checked because the policy or the
	// options leave the member open; Detail then says what the evidence holds.
	Skipped bool
	// Warning is set (with OK) when the check passed with a reservation a reviewer must
	// read (evidence that is not fresh, a policy that trusts what the host measures of
	// itself without pinning what measured it): the report stays OK, and
	// EvidenceOptions.Strict refuses it.
	Warning bool
	// Value is the value checked where there is one (a measurement, a nonce, a key), as
	// a policy or the evidence spells it.
	Value string
	// Detail explains the result for a human reviewer.
	Detail string
	// more are lines that detail the check in the text form only (the events of the
	// log, the modules of a manifest); the JSON form has them as members of the
	// report.
	more []string
}

// String renders c as report lines: "ok  ", "skip", "warn" or "FAIL", then
// "name: detail", then any detail lines indented. Every character a terminal would
// not print as itself (newlines, escape sequences from a hostile host's text) is
// escaped, so that no value can forge a line of the report.
func (c Check) String() string {
	status := map[string]string{"ok": "ok  ", "skip": "skip", "warn": "warn", "fail": "FAIL"}[c.Verdict()]
	var b strings.Builder
	b.WriteString(status + " " + printable(c.Name) + ": " + printable(c.Detail))
	for _, line := range c.more {
		b.WriteString("\n       " + printable(line))
	}
	return b.String()
}

// printable escapes, as Go would in a quoted string, every rune of s that is not a
// printable character or a space.
func printable(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r != ' ' && !unicode.IsPrint(r) }) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r == ' ' || unicode.IsPrint(r) {
			b.WriteRune(r)
		} else {
			q := strconv.QuoteRune(r) // 'x' with x escaped
			b.WriteString(q[1 : len(q)-1])
		}
	}
	return b.String()
}

// Verdict returns the check's verdict as the JSON report spells it: "ok", "skip",
// "warn" or "fail".
func (c Check) Verdict() string {
	switch {
	case !c.OK:
		return "fail"
	case c.Skipped:
		return "skip"
	case c.Warning:
		return "warn"
	}
	return "ok"
}

// MarshalJSON encodes c as a check of the JSON report: {"name", "verdict", "detail"}
// and "value" when there is one.
func (c Check) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Name    string `json:"name"`
		Verdict string `json:"verdict"`
		Detail  string `json:"detail"`
		Value   string `json:"value,omitempty"`
	}{c.Name, c.Verdict(), c.Detail, c.Value})
}

// Report is the result of VerifyEvidence: its checks, in the order they ran, and what
// the evidence established.
type Report struct {
	Checks []Check
	// Strict is set when the report was made under EvidenceOptions.Strict: then every
	// skip or warning line is also a failure of its last check, "strict".
	Strict bool
	// Fresh is set when the evidence binds a nonce the caller chose for this very
	// verification (EvidenceOptions.Nonce, not Archived): the host held its key when
	// asked, not only once at boot.
	Fresh bool

	// What VerifyEvidence looked at and established, for the JSON form and for
	// PinningPolicy: the evidence's claims, and the quote, the events and the manifest
	// once they verified (nil until then).
	evidence  *reportEvidence
	quote     *Quote
	events    []Event
	gpus      []nvidia.Identity // the GPUs whose reports verified, in order, for PinningPolicy
	manifest  json.RawMessage
	checkedAt time.Time
}

// reportEvidence is what the evidence claims, as the JSON report's "evidence" shows it.
type reportEvidence struct {
	Kind       string `json:"kind"`
	Mode       string `json:"mode"`
	HostKey    string `json:"host_key"`
	TLSKey     string `json:"tls_key"`
	Nonce      string `json:"nonce,omitempty"`
	PipelineID string `json:"pipeline_id,omitempty"`
}

// The kinds of evidence, as the JSON report's evidence.kind names them.
const (
	kindBoot     = "boot"
	kindPipeline = "pipeline"
)

// ReportFormat names the JSON encoding of a Report; it changes only with the format.
const ReportFormat = "cocoon-verify-report/v1"

// MarshalJSON encodes r as the JSON report that `cocoon verify --json` prints and the
// reviewer's page reads (attest/README.md documents every member):
//
//	{"format": "cocoon-verify-report/v1", "ok": true, "strict": false, "fresh": true,
//	 "checked_at": "2026-12-04T10:00:00Z",
//	 "evidence": {"kind": "boot", "mode": "tdx", "host_key": "<hex>", "tls_key": "<hex>", "nonce": "<hex>"},
//	 "td": {"mrtd": "<hex>", "rtmr0": ..., "rtmr3": ..., "td_attributes": "<hex>", "xfam": "<hex>",
//	        "mr_seam": ..., "mr_owner": ..., "mr_config_id": ..., "mr_owner_config": ...,
//	        "debug": false, "tcb_status": "UpToDate"},
//	 "events": [{"type": "host-binary", "value": "sha256:<hex>"}, ...],
//	 "manifest": null,
//	 "checks": [{"name": "quote signature chain", "verdict": "ok", "detail": "...", "value": "..."}, ...]}
//
// "ok" is Report.OK. "td", "events" and "manifest" hold only what verified (the quote's
// signature chain, the log's replay, a manifest that hashes to the pipeline id asked
// for), null otherwise; "manifest" is the canonical manifest object of pipeline
// evidence. Checks are in the order they ran.
func (r *Report) MarshalJSON() ([]byte, error) {
	checks := r.Checks
	if checks == nil {
		checks = []Check{}
	}
	type event struct {
		Type  EventType `json:"type"`
		Value string    `json:"value"`
	}
	var events []event
	for _, e := range r.events {
		events = append(events, event{e.Type, e.Value()})
	}
	var checkedAt string
	if !r.checkedAt.IsZero() {
		checkedAt = r.checkedAt.UTC().Format(time.RFC3339)
	}
	return json.Marshal(struct {
		Format    string          `json:"format"`
		OK        bool            `json:"ok"`
		Strict    bool            `json:"strict"`
		Fresh     bool            `json:"fresh"`
		CheckedAt string          `json:"checked_at,omitempty"`
		Evidence  *reportEvidence `json:"evidence,omitempty"`
		TD        *reportTD       `json:"td"`
		Events    []event         `json:"events"`
		Manifest  json.RawMessage `json:"manifest"`
		Checks    []Check         `json:"checks"`
	}{ReportFormat, r.OK(), r.Strict, r.Fresh, checkedAt, r.evidence, newReportTD(r.quote), events, r.manifest, checks})
}

// reportTD is the JSON report's "td": the verified quote's measurements, in hex.
type reportTD struct {
	MRTD          string  `json:"mrtd"`
	RTMR0         string  `json:"rtmr0"`
	RTMR1         string  `json:"rtmr1"`
	RTMR2         string  `json:"rtmr2"`
	RTMR3         string  `json:"rtmr3"`
	TDAttributes  string  `json:"td_attributes"`
	XFAM          string  `json:"xfam"`
	MRSEAM        string  `json:"mr_seam"`
	MROwner       string  `json:"mr_owner"`
	MRConfigID    string  `json:"mr_config_id"`
	MROwnerConfig string  `json:"mr_owner_config"`
	Debug         bool    `json:"debug"`
	TCBStatus     *string `json:"tcb_status"`
}

func newReportTD(q *Quote) *reportTD {
	if q == nil {
		return nil
	}
	td := &reportTD{
		MRTD: hex.EncodeToString(q.MRTD[:]), RTMR0: hex.EncodeToString(q.RTMRs[0][:]),
		RTMR1: hex.EncodeToString(q.RTMRs[1][:]), RTMR2: hex.EncodeToString(q.RTMRs[2][:]),
		RTMR3: hex.EncodeToString(q.RTMRs[3][:]), TDAttributes: hex.EncodeToString(q.TDAttributes[:]),
		XFAM: hex.EncodeToString(q.XFAM[:]), MRSEAM: hex.EncodeToString(q.MRSEAM[:]),
		MROwner: hex.EncodeToString(q.MROwner[:]), MRConfigID: hex.EncodeToString(q.MRConfigID[:]),
		MROwnerConfig: hex.EncodeToString(q.MROwnerConfig[:]), Debug: q.Debug(),
	}
	if q.TCBStatus != "" {
		td.TCBStatus = &q.TCBStatus
	}
	return td
}

// OK reports whether no check failed. Skip and warning lines are OK: EvidenceOptions.Strict
// turns them into a failure.
func (r *Report) OK() bool {
	return !slices.ContainsFunc(r.Checks, func(c Check) bool { return !c.OK })
}

// String renders the report, one line per check (and the detail lines of some).
func (r *Report) String() string {
	var b strings.Builder
	for _, c := range r.Checks {
		b.WriteString(c.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// add appends a check with its verdict: "ok", "skip", "warn" or "fail".
func (r *Report) add(verdict, name, value, format string, args ...any) *Check {
	r.Checks = append(r.Checks, Check{Name: name, OK: verdict != "fail", Skipped: verdict == "skip",
		Warning: verdict == "warn", Value: value, Detail: fmt.Sprintf(format, args...)})
	return &r.Checks[len(r.Checks)-1]
}

func (r *Report) pass(name, format string, args ...any) { r.add("ok", name, "", format, args...) }
func (r *Report) skip(name, format string, args ...any) { r.add("skip", name, "", format, args...) }
func (r *Report) fail(name, format string, args ...any) { r.add("fail", name, "", format, args...) }

// checkStrict adds the "strict" check: it fails naming every check that did not pass
// outright (a skip: a measurement the policy leaves open, or an option not given; a
// warning) and evidence that is not fresh.
func (r *Report) checkStrict() {
	var open, warned []string
	for _, c := range r.Checks {
		switch c.Verdict() {
		case "skip":
			open = append(open, c.Name)
		case "warn":
			warned = append(warned, c.Name)
		}
	}
	var problems []string
	if open != nil {
		problems = append(problems, "not pinned or not checked: "+strings.Join(open, ", "))
	}
	if warned != nil {
		problems = append(problems, "warnings: "+strings.Join(warned, ", "))
	}
	if !r.Fresh && !slices.Contains(warned, "nonce") {
		problems = append(problems, "not fresh")
	}
	if problems != nil {
		r.fail("strict", "%s", strings.Join(problems, "; "))
		return
	}
	r.pass("strict", "every measurement is pinned by the policy, every option was checked, no warning, and the evidence is fresh")
}
