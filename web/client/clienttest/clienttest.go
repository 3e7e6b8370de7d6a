// Package clienttest runs a real host for the tests of programs built on package
// client: the web server of package web over a fresh sandbox, module store and pipeline
// registry. It is for tests only: everything it makes lives in the test's temporary
// directory and ends with the test.
package clienttest

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/cocoonhost/cocoon/host"
	"github.com/cocoonhost/cocoon/web"
)

// Handler returns the handler of web.New(cfg), with cfg's Sandbox, Store and Registry
// made fresh (an empty store and registry in t's temporary directory) and closed when
// t ends. It fails t when any of them cannot be made.
func Handler(t testing.TB, cfg web.Config) http.Handler {
	t.Helper()
	ctx := context.Background()
	sandbox, err := host.NewSandbox(ctx, host.NewSandboxConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sandbox.Close(ctx) })
	data := t.TempDir()
	store, err := host.OpenStore(ctx, sandbox, filepath.Join(data, "modules"))
	if err != nil {
		t.Fatal(err)
	}
	registry, err := host.OpenRegistry(sandbox, store, filepath.Join(data, "pipelines"), make([]byte, host.MinRegistryKey))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Sandbox, cfg.Store, cfg.Registry = sandbox, store, registry
	srv, err := web.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return srv.Handler()
}
