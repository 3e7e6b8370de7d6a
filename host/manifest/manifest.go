// Package manifest is a pipeline's manifest as a client uploads it: its strict parsing
// and checks, its canonical bytes and the pipeline id they hash to. Package host serves
// pipelines from it; cocoon pipeline-id, cocoon verify --expect-manifest and the
// reviewer's page (web/page/verifier, compiled to WebAssembly) canonicalize a manifest
// with it. It depends on no sandbox, so the browser runs the very code the host runs,
// and a manifest a reviewer pins is canonicalized exactly as the host canonicalizes
// the one it attests.
package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/internal/strictjson"
)

// Bounds of a manifest, checked by Parse.
const (
	// MaxStageModules is the most modules one stage (pre or post) may list.
	MaxStageModules = abi.MaxStageModules
	// MaxModelBytes is the longest model name.
	MaxModelBytes = 256
)

// Manifest describes a pipeline as a client uploads it: the ABI version its modules
// were built for, the model, and the pre and post modules in the order they run, each
// with its config and limits. Modules are named by their "sha256:" hash; the bytes
// travel separately. A Manifest from Parse is checked; ID identifies it.
type Manifest struct {
	ABIVersion int      `json:"abi_version"`
	Model      string   `json:"model"`
	Pre        []Module `json:"pre"`
	Post       []Module `json:"post"`
}

// Module places one module in a manifest.
type Module struct {
	// Module is the module's identity, "sha256:" and 64 lowercase hex digits.
	Module string `json:"module"`
	// Config is any JSON value; the module reads its compact encoding (member order
	// kept) through cocoon.config. Absent and null both mean no config.
	Config json.RawMessage `json:"config,omitempty"`
	// Limits override abi.DefaultLimits field by field, up to abi.CeilingLimits.
	Limits abi.Limits `json:"limits"`
}

// Parse decodes and checks a manifest from client bytes. It is strict: unknown
// members, trailing data, a malformed module hash, an ABI version the host does not
// support, an empty or oversized model name, more than MaxStageModules modules in a
// stage, limits above abi.CeilingLimits, and a config whose compact encoding is over
// abi.MaxConfigBytes are all errors, each starting "manifest: " and naming the place in
// the manifest, safe to show a client. It does not look modules up.
func Parse(b []byte) (*Manifest, error) {
	var m Manifest
	if err := strictjson.Decode(b, &m); err != nil {
		return nil, placed("", err)
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	return &m, nil
}

func placed(place string, err error) error {
	if place != "" {
		return fmt.Errorf("manifest: %s: %w", place, err)
	}
	return fmt.Errorf("manifest: %w", err)
}

func (m *Manifest) check() error {
	if !slices.Contains(abi.SupportedVersions, m.ABIVersion) {
		return placed("abi_version", fmt.Errorf("%d is not supported; this host supports %v", m.ABIVersion, abi.SupportedVersions))
	}
	if err := checkModel(m.Model); err != nil {
		return placed("model", err)
	}
	for _, st := range m.stages() {
		if len(st.modules) > MaxStageModules {
			return placed(st.name, fmt.Errorf("%d modules, over the limit of %d", len(st.modules), MaxStageModules))
		}
		for i := range st.modules {
			if err := st.modules[i].check(); err != nil {
				return placed(fmt.Sprintf("%s module %d", st.name, i+1), err)
			}
		}
	}
	return nil
}

// stages returns the pre and post stages, named as SPEC.md names them.
func (m *Manifest) stages() []struct {
	name    string
	modules []Module
} {
	return []struct {
		name    string
		modules []Module
	}{{"pre", m.Pre}, {"post", m.Post}}
}

func checkModel(model string) error {
	switch {
	case model == "":
		return errors.New("required")
	case len(model) > MaxModelBytes:
		return fmt.Errorf("%d bytes, over the limit of %d", len(model), MaxModelBytes)
	case !utf8.ValidString(model):
		return errors.New("not valid UTF-8")
	case strings.IndexFunc(model, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return errors.New("holds a control or non-printable character")
	}
	return nil
}

// check validates the hash, limits and config, and compacts the config in place.
func (mm *Module) check() error {
	if err := CheckHash(mm.Module); err != nil {
		return err
	}
	if err := mm.Limits.Check(); err != nil {
		return fmt.Errorf("limits: %w", err)
	}
	if string(mm.Config) == "null" {
		mm.Config = nil
	}
	if mm.Config != nil {
		var buf bytes.Buffer
		if err := json.Compact(&buf, mm.Config); err != nil {
			return fmt.Errorf("config: %w", strictjson.Problem(err))
		}
		if buf.Len() > abi.MaxConfigBytes {
			return fmt.Errorf("config of %d bytes (compact) is over the limit of %d", buf.Len(), abi.MaxConfigBytes)
		}
		mm.Config = buf.Bytes()
	}
	return nil
}

// CheckHash reports whether s is a module identity: "sha256:" and 64 lowercase hex
// digits, as host.HashOf returns.
func CheckHash(s string) error {
	hexSum, ok := strings.CutPrefix(s, "sha256:")
	if !ok {
		return fmt.Errorf("module %q is not a module hash: it must start with \"sha256:\"", s)
	}
	if len(hexSum) != 64 || strings.IndexFunc(hexSum, func(r rune) bool {
		return !('0' <= r && r <= '9' || 'a' <= r && r <= 'f')
	}) >= 0 {
		return fmt.Errorf("module %q is not a module hash: \"sha256:\" must be followed by 64 lowercase hex digits", s)
	}
	return nil
}

// Modules returns the hashes of the manifest's modules, pre then post, in order, each
// once.
func (m *Manifest) Modules() []string {
	var out []string
	for _, mm := range append(slices.Clip(m.Pre), m.Post...) {
		if !slices.Contains(out, mm.Module) {
			out = append(out, mm.Module)
		}
	}
	return out
}

// Canonical returns the bytes the pipeline id is the sha256 of. They are the JSON
// object
//
//	{"abi_version":N,"model":S,"pre":[M...],"post":[M...]}
//	M = {"module":"sha256:<hex>","config":C,"limits":{"memory_pages":N,"time_ms":N,"input_bytes":N,"output_bytes":N,"log_bytes":N,"table_elements":N}}
//
// with members in exactly this order, no whitespace, empty stages as [], C the config's
// compact encoding (member order as uploaded, since that is what the module reads) or
// null, and limits with every default filled in (abi.Limits.WithDefaults), so the id
// pins the limits modules actually run under even if a later host changes its defaults.
// Strings are escaped as RFC 8259 requires and no more (encoding/json without HTML
// escaping). Same manifest, same bytes, on any host.
func (m *Manifest) Canonical() []byte {
	type module struct {
		Module string          `json:"module"`
		Config json.RawMessage `json:"config"`
		Limits abi.Limits      `json:"limits"`
	}
	stage := func(mms []Module) []module {
		out := make([]module, len(mms))
		for i, mm := range mms {
			cfg := mm.Config
			if cfg == nil {
				cfg = json.RawMessage("null")
			}
			out[i] = module{mm.Module, cfg, mm.Limits.WithDefaults()}
		}
		return out
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	// Cannot fail: every value is a plain string, number or compact JSON checked by
	// Parse.
	if err := enc.Encode(struct {
		ABIVersion int      `json:"abi_version"`
		Model      string   `json:"model"`
		Pre        []module `json:"pre"`
		Post       []module `json:"post"`
	}{m.ABIVersion, m.Model, stage(m.Pre), stage(m.Post)}); err != nil {
		panic("manifest: canonical encoding: " + err.Error())
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// ID returns the pipeline id: the lowercase hex sha256 of Canonical.
func (m *Manifest) ID() string {
	sum := sha256.Sum256(m.Canonical())
	return hex.EncodeToString(sum[:])
}
