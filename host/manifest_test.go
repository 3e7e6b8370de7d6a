package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/abi"
)

var (
	hashA = "sha256:" + strings.Repeat("a", 64)
	hashB = "sha256:" + strings.Repeat("b", 64)
)

// goldenManifest is the fixed manifest of TestManifestGolden, written untidily on
// purpose: whitespace, members out of order, a config with spaces, defaults left out.
var goldenManifest = `{
  "post": [{"limits": {"time_ms": 1000}, "module": "` + hashB + `"}],
  "model": "stories260K",
  "pre": [{"module": "` + hashA + `", "config": {"system": "Be <brief>", "n": [1, 2]},
           "limits": {"memory_pages": 16}}],
  "abi_version": 1
}`

func parse(t *testing.T, s string) *Manifest {
	t.Helper()
	m, err := ParseManifest([]byte(s))
	if err != nil {
		t.Fatalf("ParseManifest(%s): %v", s, err)
	}
	return m
}

// TestManifestGolden pins the canonical form and the id: both were computed outside Go
// (printf | sha256sum) from the form documented on Canonical, so neither can drift.
func TestManifestGolden(t *testing.T) {
	const canonical = `{"abi_version":1,"model":"stories260K",` +
		`"pre":[{"module":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","config":{"system":"Be <brief>","n":[1,2]},` +
		`"limits":{"memory_pages":16,"time_ms":250,"input_bytes":1048576,"output_bytes":1048576,"log_bytes":16384,"table_elements":65536}}],` +
		`"post":[{"module":"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","config":null,` +
		`"limits":{"memory_pages":1024,"time_ms":1000,"input_bytes":1048576,"output_bytes":1048576,"log_bytes":16384,"table_elements":65536}}]}`
	const id = "1988cc8825d22037cdc95de1a4ec4d68975b4b29190b407f02c8d69ccb6a6dc7"
	m := parse(t, goldenManifest)
	if got := string(m.Canonical()); got != canonical {
		t.Errorf("Canonical:\n got %s\nwant %s", got, canonical)
	}
	if got := m.ID(); got != id {
		t.Errorf("ID = %s, want %s", got, id)
	}
}

func TestManifestIDIgnoresPresentation(t *testing.T) {
	want := parse(t, goldenManifest).ID()
	for name, s := range map[string]string{
		"compact, keys in order": `{"abi_version":1,"model":"stories260K","pre":[{"module":"` + hashA +
			`","config":{"system":"Be <brief>","n":[1,2]},"limits":{"memory_pages":16}}],"post":[{"module":"` + hashB + `","limits":{"time_ms":1000}}]}`,
		"explicit defaults and null config": `{"abi_version":1,"model":"stories260K","pre":[{"module":"` + hashA +
			`","config":{"system":"Be <brief>","n":[1,2]},"limits":{"memory_pages":16,"time_ms":250,"input_bytes":1048576,"output_bytes":1048576,"log_bytes":16384,"table_elements":65536}}],` +
			`"post":[{"module":"` + hashB + `","config":null,"limits":{"time_ms":1000,"memory_pages":1024}}]}`,
		"whitespace inside config": "\t{\"pre\":[{\"limits\":{\"memory_pages\":16},\"config\":{ \"system\" : \"Be <brief>\" ,\n\"n\" : [ 1 , 2 ] },\"module\":\"" + hashA +
			"\"}],\"abi_version\":1,\"post\":[{\"module\":\"" + hashB + "\",\"limits\":{\"time_ms\":1000}}],\"model\":\"stories260K\"}\n",
	} {
		if got := parse(t, s).ID(); got != want {
			t.Errorf("%s: ID = %s, want %s", name, got, want)
		}
	}
}

func TestManifestIDCoversEveryField(t *testing.T) {
	base := parse(t, goldenManifest)
	edit := func(f func(m *Manifest)) *Manifest {
		m := parse(t, goldenManifest)
		f(m)
		return m
	}
	seen := map[string]string{base.ID(): "base"}
	for name, m := range map[string]*Manifest{
		"abi version":         edit(func(m *Manifest) { m.ABIVersion = 2 }),
		"model":               edit(func(m *Manifest) { m.Model = "stories15M" }),
		"pre module":          edit(func(m *Manifest) { m.Pre[0].Module = hashB }),
		"post module":         edit(func(m *Manifest) { m.Post[0].Module = hashA }),
		"module order":        edit(func(m *Manifest) { m.Pre = append(m.Pre, m.Post[0]); m.Pre[0], m.Pre[1] = m.Pre[1], m.Pre[0] }),
		"same modules, order": edit(func(m *Manifest) { m.Pre = append(m.Pre, m.Post[0]) }),
		"stage of a module":   edit(func(m *Manifest) { m.Post = append(m.Post, m.Pre...); m.Pre = nil }),
		"config value":        edit(func(m *Manifest) { m.Pre[0].Config = json.RawMessage(`{"system":"Be brief","n":[1,2]}`) }),
		"config member order": edit(func(m *Manifest) { m.Pre[0].Config = json.RawMessage(`{"n":[1,2],"system":"Be <brief>"}`) }),
		"config absent":       edit(func(m *Manifest) { m.Pre[0].Config = nil }),
		"memory":              edit(func(m *Manifest) { m.Pre[0].Limits.MemoryPages = 17 }),
		"time":                edit(func(m *Manifest) { m.Pre[0].Limits.CallTimeout = abi.Duration(251 * time.Millisecond) }),
		"input":               edit(func(m *Manifest) { m.Pre[0].Limits.InputBytes = 1 }),
		"output":              edit(func(m *Manifest) { m.Post[0].Limits.OutputBytes = 1 }),
		"logs":                edit(func(m *Manifest) { m.Post[0].Limits.LogBytes = 1 }),
	} {
		id := m.ID()
		if other, dup := seen[id]; dup {
			t.Errorf("%s: same id as %s", name, other)
		}
		seen[id] = name
	}
}

func TestParseManifestErrors(t *testing.T) {
	module := func(fields string) string {
		return `{"abi_version":1,"model":"m","pre":[{"module":"` + hashA + `"` + fields + `}]}`
	}
	for _, tc := range []struct{ name, in, want string }{
		{"empty", ``, "empty body"},
		{"not JSON", `{"abi_version":1,`, "unexpected end of input"},
		{"not an object", `[1]`, "JSON array where an object is required"},
		{"trailing data", `{"abi_version":1,"model":"m"} {}`, "unexpected data after the JSON object"},
		{"unknown member", `{"abi_version":1,"model":"m","modules":[]}`, `unknown member "modules"`},
		{"unknown module member", module(`,"hooks":["pre"]`), `unknown member "hooks"`},
		{"unknown limit", module(`,"limits":{"fuel":1}`), `unknown member "fuel"`},
		{"wrong type", `{"abi_version":"1","model":"m"}`, `JSON string for field "abi_version"`},
		{"no abi version", `{"model":"m"}`, "manifest: abi_version: 0 is not supported; this host supports [1]"},
		{"abi version 2", `{"abi_version":2,"model":"m"}`, "abi_version: 2 is not supported"},
		{"no model", `{"abi_version":1}`, "manifest: model: required"},
		{"control in model", `{"abi_version":1,"model":"a\nb"}`, "model: holds a control"},
		{"long model", `{"abi_version":1,"model":"` + strings.Repeat("m", MaxModelBytes+1) + `"}`, "257 bytes, over the limit of 256"},
		{"no prefix", `{"abi_version":1,"model":"m","post":[{"module":"` + strings.Repeat("a", 64) + `"}]}`, `post module 1: module "aaaa`},
		{"upper case", `{"abi_version":1,"model":"m","pre":[{"module":"sha256:` + strings.Repeat("A", 64) + `"}]}`, "64 lowercase hex digits"},
		{"short hash", `{"abi_version":1,"model":"m","pre":[{"module":"sha256:abc"}]}`, "64 lowercase hex digits"},
		{"memory over ceiling", module(`,"limits":{"memory_pages":4097}`), "pre module 1: limits: memory_pages 4097 is above the ceiling of 4096"},
		{"time over ceiling", module(`,"limits":{"time_ms":10001}`), "limits: time_ms 10001 must be between 0"},
		{"time not whole", module(`,"limits":{"time_ms":1.5}`), "time_ms must be a whole number of milliseconds"},
		{"negative input", module(`,"limits":{"input_bytes":-1}`), "input_bytes -1 must be between 0"},
		{"config too big", module(`,"config":"` + strings.Repeat("x", abi.MaxConfigBytes) + `"`), "config of 65538 bytes (compact) is over the limit of 65536"},
		{"too many modules", `{"abi_version":1,"model":"m","pre":[` + strings.Repeat(`{"module":"`+hashA+`"},`, MaxStageModules) + `{"module":"` + hashA + `"}]}`, "manifest: pre: 17 modules, over the limit of 16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseManifest([]byte(tc.in))
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeInvalidPipeline || e.Status != 400 {
				t.Fatalf("err = %#v, want *Error with CodeInvalidPipeline", err)
			}
			if !strings.Contains(e.Error(), tc.want) {
				t.Errorf("err = %q, want it to contain %q", e.Error(), tc.want)
			}
		})
	}
}

// A config of exactly the limit once compacted is accepted, whatever its whitespace.
func TestManifestConfigLimitIsCompact(t *testing.T) {
	value := `"` + strings.Repeat("x", abi.MaxConfigBytes-2) + `"`
	m := parse(t, `{"abi_version":1,"model":"m","pre":[{"module":"`+hashA+`","config":   `+value+`   }]}`)
	if len(m.Pre[0].Config) != abi.MaxConfigBytes {
		t.Errorf("config is %d bytes, want %d", len(m.Pre[0].Config), abi.MaxConfigBytes)
	}
}

func TestModules(t *testing.T) {
	m := parse(t, `{"abi_version":1,"model":"m","pre":[{"module":"`+hashB+`"},{"module":"`+hashA+`"}],"post":[{"module":"`+hashB+`"}]}`)
	if got := fmt.Sprint(m.Modules()); got != fmt.Sprint([]string{hashB, hashA}) {
		t.Errorf("Modules = %s", got)
	}
}

// TestPipelineFromManifest: a manifest becomes a pipeline through the registry
// (Registry.Add, the one way a client's manifest reaches the sandbox): one that runs
// its modules, or a CodeInvalidPipeline error naming the stage and module that is not
// stored or does not implement its stage.
func TestPipelineFromManifest(t *testing.T) {
	ctx := context.Background()
	f := newRegistryFixture(t)
	pre, post := f.pre.Hash, f.post.Hash
	for _, tc := range []struct{ name, pre, post, want string }{
		{"ok", pre, post, ""},
		{"missing", pre, hashB, "post module 1: " + hashB + " is not stored on this host"},
		{"wrong stage", post, post, "pre module 1: " + post + " implements post but not cocoon_pre"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := parse(t, `{"abi_version":1,"model":"m","pre":[{"module":"`+tc.pre+`","config":{"k":1}}],"post":[{"module":"`+tc.post+`"}]}`)
			e, _, err := f.open(t).Add(m, "key:test")
			if tc.want != "" {
				var he *Error
				if !errors.As(err, &he) || he.Code != CodeInvalidPipeline || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want an *Error with CodeInvalidPipeline and %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			res, err := e.Pipeline.Run(ctx, []byte(testRequest), storyteller, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Logs) != 1 || res.Logs[0].Message != "post ran" {
				t.Errorf("logs = %v, want the post module's record", res.Logs)
			}
		})
	}
}

// FuzzParseManifest feeds client bytes to ParseManifest: it must never panic, and what
// it accepts must have a canonical form that parses to the same id.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(goldenManifest))
	f.Add([]byte(`{"abi_version":1,"model":"m","pre":[{"module":"` + hashA + `","config":null}],"post":[]}`))
	f.Add([]byte(`{"abi_version":1,"model":"\u2028<&>","post":[{"module":"` + hashB + `","config":"\u00e9\ud83d\ude00"}]}`))
	f.Add([]byte(`{"abi_version":1,"model":"m"} x`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeInvalidPipeline {
				t.Fatalf("error %v is not an *Error with CodeInvalidPipeline", err)
			}
			return
		}
		canonical := m.Canonical()
		m2, err := ParseManifest(canonical)
		if err != nil {
			t.Fatalf("canonical form %s does not parse: %v", canonical, err)
		}
		if got := m2.Canonical(); string(got) != string(canonical) {
			t.Fatalf("canonical form is not a fixed point:\n%s\n%s", canonical, got)
		}
	})
}
