package host

import (
	"fmt"

	"github.com/cocoonhost/cocoon/host/manifest"
)

// The manifest lives in package host/manifest, which builds without the sandbox so the
// reviewer's page canonicalizes a manifest with the code the host runs; these names keep
// host's API.
type (
	// Manifest is manifest.Manifest: a pipeline as a client uploads it.
	Manifest = manifest.Manifest
	// ManifestModule is manifest.Module: one module placed in a manifest.
	ManifestModule = manifest.Module
)

// Bounds of a manifest, checked by ParseManifest.
const (
	// MaxStageModules is the most modules one stage (pre or post) may list.
	MaxStageModules = manifest.MaxStageModules
	// MaxModelBytes is the longest model name.
	MaxModelBytes = manifest.MaxModelBytes
)

// ParseManifest decodes and checks a manifest from client bytes with manifest.Parse.
// Its errors are *Error with CodeInvalidPipeline and manifest.Parse's message, naming
// the place in the manifest.
func ParseManifest(b []byte) (*Manifest, error) {
	m, err := manifest.Parse(b)
	if err != nil {
		return nil, &Error{Code: CodeInvalidPipeline, Status: statusOf(CodeInvalidPipeline), Message: err.Error()}
	}
	return m, nil
}

// CheckHash reports whether s is a module identity: "sha256:" and 64 lowercase hex
// digits, as HashOf returns (manifest.CheckHash).
func CheckHash(s string) error { return manifest.CheckHash(s) }

// pipelineFromManifest builds the pipeline m describes, of owners
// (PipelineSpec.Owners), from modules in store: Registry.Add and a registry's reload
// are its callers. Errors are *Error with CodeInvalidPipeline naming the module: one
// missing from the store, or any check of NewPipeline. The model is not checked here:
// the caller knows which models its backend serves.
func (s *Sandbox) pipelineFromManifest(m *Manifest, store *Store, owners []string) (*Pipeline, error) {
	spec := PipelineSpec{Owners: owners}
	for _, st := range []struct {
		stage Stage
		mms   []ManifestModule
		out   *[]ModuleSpec
	}{{StagePre, m.Pre, &spec.Pre}, {StagePost, m.Post, &spec.Post}} {
		for i, mm := range st.mms {
			mod, ok := store.Get(mm.Module)
			if !ok {
				return nil, &Error{Code: CodeInvalidPipeline, Status: statusOf(CodeInvalidPipeline),
					Message: fmt.Sprintf("%s module %d: %s is not stored on this host: upload its bytes with the manifest", st.stage, i+1, mm.Module)}
			}
			*st.out = append(*st.out, ModuleSpec{Module: mod, Config: mm.Config, Limits: mm.Limits})
		}
	}
	return s.NewPipeline(spec)
}
