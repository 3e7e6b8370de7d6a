package attest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/abi"
)

func bootTestHost(t *testing.T) (*Host, *x509.CertPool) {
	t.Helper()
	sim, roots := newTestSim(t)
	h, err := Boot(context.Background(), sim, "embedded", "sha256:"+strings.Repeat("ab", 32))
	if err != nil {
		t.Fatal(err)
	}
	return h, roots
}

// Boot evidence verifies, replays to RTMR3, binds the keys and log, and measures what
// Boot documents.
func TestBootEvidence(t *testing.T) {
	h, roots := bootTestHost(t)
	ev := h.BootEvidence()
	if ev.Mode != ModeSim {
		t.Errorf("mode %q", ev.Mode)
	}
	q, err := VerifyQuote(ev.Quote, VerifyOptions{TrustedRoots: roots})
	if err != nil {
		t.Fatal(err)
	}
	events, err := ParseEventLog(ev.EventLog)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyLog(events, q.RTMRs[3]); err != nil {
		t.Fatal(err)
	}
	digest, _ := Replay(events)
	want, err := BootReportData(ev.HostKey, ev.TLSKey, digest)
	if err != nil {
		t.Fatal(err)
	}
	if q.ReportData != want {
		t.Error("REPORTDATA is not BootReportData of the served fields")
	}

	exe, _ := os.Executable()
	f, _ := os.Open(exe)
	hash := sha256.New()
	io.Copy(hash, f)
	f.Close()
	wantEvents := []Event{HostBinaryEvent([32]byte(hash.Sum(nil))), ABIVersionEvent(1),
		SandboxPolicyEvent(sha256.Sum256(SandboxPolicy())), BackendEvent("embedded"),
		ModelEvent("sha256:" + strings.Repeat("ab", 32)), GPUsEvent(nil), SealEvent()}
	if fmt.Sprint(events) != fmt.Sprint(wantEvents) {
		t.Errorf("events\n%v\nwant\n%v", events, wantEvents)
	}
}

func TestPipelineEvidence(t *testing.T) {
	h, roots := bootTestHost(t)
	manifest := []byte(`{"abi_version":1,"model":"m","pre":[],"post":[]}`)
	nonce := bytes.Repeat([]byte{7}, 16)
	ev, err := h.PipelineEvidence(context.Background(), nonce, manifest)
	if err != nil {
		t.Fatal(err)
	}
	q, err := VerifyQuote(ev.Quote, VerifyOptions{TrustedRoots: roots})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := PipelineReportData(nonce, sha256.Sum256(manifest), h.PublicKey())
	if q.ReportData != want {
		t.Error("REPORTDATA does not bind nonce, manifest and host key")
	}
	if ev.PipelineID != fmt.Sprintf("%x", sha256.Sum256(manifest)) || !bytes.Equal(ev.Manifest, manifest) || !bytes.Equal(ev.Nonce, nonce) {
		t.Errorf("pipeline fields: %q %s %x", ev.PipelineID, ev.Manifest, ev.Nonce)
	}
	if _, err := h.PipelineEvidence(context.Background(), nonce[:15], manifest); !errors.Is(err, ErrReportDataInput) {
		t.Errorf("short nonce: %v", err)
	}
}

// Fresh boot evidence binds the client's nonce: it verifies as fresh with that nonce
// and with no other.
func TestFreshBootEvidence(t *testing.T) {
	h, roots := bootTestHost(t)
	nonce := bytes.Repeat([]byte{9}, 32)
	ev, err := h.FreshBootEvidence(context.Background(), nonce)
	if err != nil {
		t.Fatal(err)
	}
	q, err := VerifyQuote(ev.Quote, VerifyOptions{TrustedRoots: roots})
	if err != nil {
		t.Fatal(err)
	}
	events, _ := ParseEventLog(ev.EventLog)
	digest, _ := Replay(events)
	if want, _ := FreshBootReportData(nonce, h.PublicKey(), h.tlsSPKI, digest); q.ReportData != want {
		t.Error("REPORTDATA does not bind the nonce, the keys and the log")
	}
	if !bytes.Equal(ev.Nonce, nonce) || ev.PipelineID != "" || ev.Manifest != nil || bytes.Equal(ev.Quote, h.BootEvidence().Quote) {
		t.Errorf("fresh boot evidence: nonce %x, pipeline %q, manifest %s, a new quote: %t", ev.Nonce, ev.PipelineID, ev.Manifest, !bytes.Equal(ev.Quote, h.BootEvidence().Quote))
	}
	if _, err := h.FreshBootEvidence(context.Background(), nonce[:15]); !errors.Is(err, ErrReportDataInput) {
		t.Errorf("short nonce: %v", err)
	}
}

// Bad measurements fail before RTMR3 is touched.
func TestBootRefusesBadIdentity(t *testing.T) {
	sim, _ := newTestSim(t)
	if _, err := Boot(context.Background(), sim, "", "m"); !errors.Is(err, ErrEventData) {
		t.Errorf("empty backend: %v", err)
	}
	if v, _ := sim.RTMR3().Read(); v != ([48]byte{}) {
		t.Error("RTMR3 extended by a failed boot")
	}
	// Extra events out of the documented order: the host would write a log every
	// verifier refuses.
	key := SettlementKeyEvent(testSettlementKey)
	if _, err := Boot(context.Background(), sim, "embedded", "m", key, SettlementKeyOriginEvent(SettlementKeyGenerated), SealingEvent(SealingSim)); !errors.Is(err, ErrEventOrder) {
		t.Errorf("sealing after the settlement key: %v", err)
	}
	if _, err := Boot(context.Background(), sim, "embedded", "m", SealingEvent(SealingSim), key); !errors.Is(err, ErrMissingEvent) {
		t.Errorf("a settlement key without its origin: %v", err)
	}
	if v, _ := sim.RTMR3().Read(); v != ([48]byte{}) {
		t.Error("RTMR3 extended by a failed boot")
	}
}

// TestSandboxPolicyCanonical pins the whole policy: any change to the sandbox's limits
// or environment changes the measured hash, and must show up here.
func TestSandboxPolicyCanonical(t *testing.T) {
	const golden = `{"policy":"cocoon-host sandbox policy v2","abi_version":1` +
		`,"default_limits":{"memory_pages":1024,"time_ms":250,"input_bytes":1048576` +
		`,"output_bytes":1048576,"log_bytes":16384,"table_elements":65536}` +
		`,"ceiling_limits":{"memory_pages":4096,"time_ms":10000,"input_bytes":16777216` +
		`,"output_bytes":16777216,"log_bytes":1048576,"table_elements":1048576}` +
		`,"fixed_limits":{"module_bytes":16777216,"config_bytes":65536` +
		`,"reject_message_bytes":1024,"min_init_time_ms":1000,"modules_per_stage":16` +
		`,"request_memory_bytes":536870912,"table_element_bytes":8` +
		`,"request_module_time_ms":10000,"request_output_bytes_per_module":16777216` +
		`,"log_records_per_module":1024,"tables_per_module":8,"call_depth":1024` +
		`,"call_frame_locals":16},"upload_limits":{"function_bytes":262144` +
		`,"nesting_depth":4096,"branches_per_function":12000,"locals_per_function":4096` +
		`,"locals_times_branches":1048576,"block_type_values":16,"read_work":67108864}` +
		`,"environment":{"clock_epoch_unix":1640995200,"clock_step_ns":1000000` +
		`,"clock_resolution_ns":1` +
		`,"random":"ChaCha8 seeded with sha256(\"cocoon abi v1 random_get\")"` +
		`,"wasi_functions":["args_get","args_sizes_get","clock_res_get","clock_time_get"` +
		`,"environ_get","environ_sizes_get","fd_advise","fd_allocate","fd_close","fd_datasync"` +
		`,"fd_fdstat_get","fd_fdstat_set_flags","fd_fdstat_set_rights","fd_filestat_get"` +
		`,"fd_filestat_set_size","fd_filestat_set_times","fd_pread","fd_prestat_dir_name"` +
		`,"fd_prestat_get","fd_pwrite","fd_read","fd_readdir","fd_renumber","fd_seek"` +
		`,"fd_sync","fd_tell","fd_write","path_create_directory","path_filestat_get"` +
		`,"path_filestat_set_times","path_link","path_open","path_readlink"` +
		`,"path_remove_directory","path_rename","path_symlink","path_unlink_file"` +
		`,"poll_oneoff","proc_exit","proc_raise","random_get","sched_yield","sock_accept"` +
		`,"sock_recv","sock_send","sock_shutdown"],"arguments":"none: no arguments` +
		`, no environment variables, stdin at its end","files":"none: no files` +
		`, no pre-opened directories","network":"none"` +
		`,"sleep":"none: poll_oneoff and sched_yield return at once"` +
		`,"instances":"fresh per request"}}`
	if got := string(SandboxPolicy()); got != golden {
		t.Errorf("SandboxPolicy() =\n%s\nwant\n%s", got, golden)
	}
}

// TestSandboxPolicyDerived: the policy's numbers are the values package abi gives the
// sandbox, not copies of them.
func TestSandboxPolicyDerived(t *testing.T) {
	var p sandboxPolicy
	if err := json.Unmarshal(SandboxPolicy(), &p); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name      string
		got, want int64
	}{
		{"request memory", int64(p.FixedLimits.RequestMemoryBytes), abi.RequestMemoryBytes},
		{"request module time", p.FixedLimits.RequestModuleMS, abi.RequestModuleTime.Milliseconds()},
		{"call depth", int64(p.FixedLimits.CallDepth), abi.MaxCallDepth},
		{"log records", int64(p.FixedLimits.LogRecords), abi.MaxLogRecords},
		{"clock epoch", p.Environment.ClockEpochUnix, abi.ClockEpochUnix},
		{"clock step", p.Environment.ClockStepNS, abi.ClockStep.Nanoseconds()},
		{"WASI functions", int64(len(p.Environment.WASIFunctions)), int64(len(abi.WASIFunctions))},
	}
	for _, w := range want {
		if w.got != w.want {
			t.Errorf("%s: policy says %d, abi %d", w.name, w.got, w.want)
		}
	}
	if p.DefaultLimits != abi.DefaultLimits || p.CeilingLimits != abi.CeilingLimits {
		t.Errorf("limits: policy %+v / %+v", p.DefaultLimits, p.CeilingLimits)
	}
	if !strings.Contains(p.Environment.Random, abi.RandomSeedText) {
		t.Errorf("random: %s", p.Environment.Random)
	}
}
