package web

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cocoonhost/cocoon/host"
)

// TestPipelineLogs: a pipeline's owners read the module logs of its failed requests;
// nobody else does, a later owner reads only what failed after it joined, and neither
// the prompt nor a request that did not fail is kept.
func TestPipelineLogs(t *testing.T) {
	f := newFixture(t)
	pii := plugin(t, "pii-redactor/go/pii-redactor.wasm")
	tmpl := plugin(t, "prompt-template/c/prompt-template.wasm")
	broken := f.push(`{"abi_version":1,"model":"stories260K","pre":[{"module":"`+hashOf(pii)+`","config":{"roles":[]}}]}`, pii)
	rejecting := f.push(`{"abi_version":1,"model":"stories260K","pre":[{"module":"`+hashOf(tmpl)+`","config":{"on_existing":"reject"}}]}`, tmpl)
	const prompt = "my secret is 4111 1111 1111 1111"
	chat := func(id, messages string) response {
		return f.do("POST", "/p/"+id+"/v1/chat/completions", ownerKey, `{"messages":`+messages+`,"max_tokens":2}`)
	}
	if res := chat(broken, `[{"role":"user","content":"`+prompt+`"}]`); res.status != 500 {
		t.Fatalf("the broken pipeline answered %d %s", res.status, res.body)
	}
	if res := chat(rejecting, `[{"role":"system","content":"`+prompt+`"},{"role":"user","content":"x"}]`); res.status != 403 {
		t.Fatalf("the rejecting pipeline answered %d %s", res.status, res.body)
	}
	if res := chat(rejecting, `[{"role":"user","content":"x"}]`); res.status != 200 {
		t.Fatalf("the rejecting pipeline answered %d %s", res.status, res.body)
	}

	read := func(id, key string) (response, logsJSON) {
		t.Helper()
		res := f.do("GET", "/v1/pipelines/"+id+"/logs", key, nil)
		var l logsJSON
		if res.status == 200 {
			res.json(t, &l)
		}
		return res, l
	}
	res, logs := read(broken, ownerKey)
	if res.status != 200 || logs.Object != "list" || logs.Pipeline != broken || len(logs.Data) != 1 {
		t.Fatalf("the owner's logs: %d %s", res.status, res.body)
	}
	got := logs.Data[0]
	if got.Status != 500 || got.Code != "module_error" || !strings.HasPrefix(got.Message, "pre module 1 ("+hashOf(pii)+")") ||
		time.Since(got.Time) > time.Minute || len(got.Logs) != 1 {
		t.Errorf("the failure: %+v", got)
	}
	if r := got.Logs[0]; r.Stage != host.StagePre || r.Index != 0 || r.Module != hashOf(pii) || r.Level != host.LevelError ||
		r.Source != "log" || !strings.Contains(r.Message, "roles is empty") {
		t.Errorf("the module's record: %+v", r)
	}
	if strings.Contains(string(res.body), "4111") {
		t.Errorf("the logs hold the prompt: %s", res.body)
	}
	if res, logs := read(rejecting, ownerKey); res.status != 200 || len(logs.Data) != 0 {
		t.Errorf("a rejection and a success were kept as failures: %d %s", res.status, res.body)
	}

	for _, tc := range []struct {
		name, id, key string
		status        int
		code          string
	}{
		{"another key", broken, otherKey, 403, "not_owner"},
		{"a Mini App user", broken, telegramAuth(t), 403, "not_owner"},
		{"no credential", broken, "", 401, "invalid_credentials"},
		{"unknown pipeline", strings.Repeat("ab", 32), ownerKey, 404, "pipeline_not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := f.do("GET", "/v1/pipelines/"+tc.id+"/logs", tc.key, nil)
			if e := res.apiErr(t); res.status != tc.status || e.Code != tc.code || strings.Contains(string(res.body), "roles is empty") {
				t.Errorf("%d %s; want %d %s", res.status, res.body, tc.status, tc.code)
			}
		})
	}

	// The other key joins the pipeline's owners by uploading it too: it reads what fails
	// from then on, not what failed before.
	res = f.do("POST", "/v1/pipelines", otherKey, upload(`{"abi_version":1,"model":"stories260K","pre":[{"module":"`+hashOf(pii)+`","config":{"roles":[]}}]}`))
	if res.status != 200 {
		t.Fatalf("joining the owners: %d %s", res.status, res.body)
	}
	if res, logs := read(broken, otherKey); res.status != 200 || len(logs.Data) != 0 {
		t.Errorf("a new owner reads earlier failures: %d %s", res.status, res.body)
	}
	chat(broken, `[{"role":"user","content":"again"}]`)
	if _, logs := read(broken, otherKey); len(logs.Data) != 1 {
		t.Errorf("the new owner reads %d failures, want the one since it joined", len(logs.Data))
	}
	if _, logs := read(broken, ownerKey); len(logs.Data) != 2 || logs.Data[1].Time.Before(logs.Data[0].Time) {
		t.Errorf("the first owner reads %+v, want both failures, oldest first", logs.Data)
	}
}

// moduleFailure is a module error of pre module 1, as a pipeline's run returns it.
var moduleFailure = &host.Error{Code: host.CodeTrap, Status: 500, Stage: host.StagePre, Module: "sha256:" + strings.Repeat("0", 64), Message: "trapped"}

// TestFailureLogBounds: the log keeps the latest failures of the pipelines that failed
// last, within its bounds.
func TestFailureLogBounds(t *testing.T) {
	l := newFailureLog()
	reg := entries(t, failurePipelines+1)
	for i, e := range reg {
		l.record(e, &host.Result{Logs: []host.LogRecord{{Message: fmt.Sprint(i)}}}, moduleFailure)
	}
	if got := l.read(reg[0].ID, "key:owner"); len(got) != 0 {
		t.Errorf("the pipeline that failed longest ago is still kept among %d: %+v", failurePipelines+1, got)
	}
	if got := l.read(reg[1].ID, "key:owner"); len(got) != 1 || got[0].Logs[0].Message != "1" {
		t.Errorf("pipeline 1: %+v", got)
	}

	e := reg[1]
	for i := range failuresPerPipeline + 3 {
		l.record(e, &host.Result{Logs: []host.LogRecord{{Message: fmt.Sprint("run ", i)}}}, moduleFailure)
	}
	got := l.read(e.ID, "key:owner")
	if len(got) != failuresPerPipeline {
		t.Fatalf("%d failures kept, want %d", len(got), failuresPerPipeline)
	}
	for i, f := range got {
		if want := fmt.Sprint("run ", i+3); f.Logs[0].Message != want {
			t.Errorf("failure %d: %q, want %q (the latest, oldest first)", i, f.Logs[0].Message, want)
		}
	}

	for _, err := range []error{nil, errors.New("backend down"), context.Canceled,
		&host.Error{Code: host.CodeRejected, Status: 403, Stage: host.StagePre, Module: moduleFailure.Module},
		&host.Error{Code: host.CodeCancelled, Status: 499, Stage: host.StagePre, Module: moduleFailure.Module},
		&host.Error{Code: host.CodeInvalidRequest, Status: 400}} {
		l.record(reg[2], &host.Result{}, err)
	}
	if got := l.read(reg[2].ID, "key:owner"); len(got) != 1 {
		t.Errorf("not failures of a module, kept: %+v", got[1:])
	}
}

// entries registers n pipelines owned by "key:owner" (manifests that differ by their
// time limit).
func entries(t testing.TB, n int) []*host.Entry {
	t.Helper()
	_, sandbox := shared(t)
	dir := t.TempDir()
	store, err := host.OpenStore(context.Background(), sandbox, dir+"/modules")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := host.OpenRegistry(sandbox, store, dir+"/pipelines", make([]byte, host.MinRegistryKey))
	if err != nil {
		t.Fatal(err)
	}
	wasm := plugin(t, "prompt-template/c/prompt-template.wasm")
	if _, err := store.Put(context.Background(), wasm); err != nil {
		t.Fatal(err)
	}
	out := make([]*host.Entry, n)
	for i := range out {
		m, err := host.ParseManifest([]byte(fmt.Sprintf(`{"abi_version":1,"model":"m","pre":[{"module":"%s","limits":{"time_ms":%d}}]}`, host.HashOf(wasm), i+1)))
		if err != nil {
			t.Fatal(err)
		}
		if out[i], _, err = reg.Add(m, "key:owner"); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestBoundRecords(t *testing.T) {
	rec := func(msg string) host.LogRecord {
		return host.LogRecord{Stage: host.StagePre, Level: host.LevelInfo, Source: "log", Message: msg}
	}
	many := func(n int, msg string) []host.LogRecord {
		out := make([]host.LogRecord, n)
		for i := range out {
			out[i] = rec(fmt.Sprint(i, msg))
		}
		return out
	}
	long := strings.Repeat("é", recordBytes) // 2 bytes each: twice the bound
	for _, tc := range []struct {
		name                      string
		in                        []host.LogRecord
		kept, dropped, truncated  int
		firstKept, lastKeptPrefix string
	}{
		{"none", nil, 0, 0, 0, "", ""},
		{"a few", many(3, ""), 3, 0, 0, "0", "2"},
		{"many", many(100, ""), failureRecords, 100 - failureRecords, 0, fmt.Sprint(100 - failureRecords), "99"},
		{"long messages", many(10, long), failureLogBytes / recordBytes, 10 - failureLogBytes/recordBytes, failureLogBytes / recordBytes, "6", "9"},
		{"one long message", []host.LogRecord{rec(long)}, 1, 0, 1, "é", "é"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kept, dropped, truncated := boundRecords(tc.in)
			if len(kept) != tc.kept || dropped != tc.dropped || truncated != tc.truncated {
				t.Fatalf("kept %d, dropped %d, truncated %d; want %d, %d, %d", len(kept), dropped, truncated, tc.kept, tc.dropped, tc.truncated)
			}
			size := 0
			for _, r := range kept {
				size += len(r.Message)
				if len(r.Message) > recordBytes || !utf8.ValidString(r.Message) {
					t.Errorf("a kept message of %d bytes, valid UTF-8 %t", len(r.Message), utf8.ValidString(r.Message))
				}
			}
			if size > failureLogBytes {
				t.Errorf("%d bytes of messages kept", size)
			}
			if len(kept) > 0 && (!strings.HasPrefix(kept[0].Message, tc.firstKept) || !strings.HasPrefix(kept[len(kept)-1].Message, tc.lastKeptPrefix)) {
				t.Errorf("kept %q ... %q", kept[0].Message[:min(8, len(kept[0].Message))], kept[len(kept)-1].Message[:min(8, len(kept[len(kept)-1].Message))])
			}
		})
	}
}

// BenchmarkFailureLogRecord is what a failed request costs to record: 8 log records of
// 200 bytes, against a request that did not fail (a type check), in the same run.
func BenchmarkFailureLogRecord(b *testing.B) {
	l := newFailureLog()
	e := entries(b, 1)[0]
	res := &host.Result{Logs: make([]host.LogRecord, 8)}
	for i := range res.Logs {
		res.Logs[i] = host.LogRecord{Stage: host.StagePre, Module: moduleFailure.Module, Level: host.LevelError, Source: "log", Message: strings.Repeat("x", 200)}
	}
	b.Run("failed", func(b *testing.B) {
		for b.Loop() {
			l.record(e, res, moduleFailure)
		}
	})
	b.Run("succeeded", func(b *testing.B) {
		for b.Loop() {
			l.record(e, res, nil)
		}
	})
}
