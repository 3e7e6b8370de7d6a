package main

import (
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/host/backend"
	"github.com/cocoonhost/cocoon/host/backend/embedded"
	"github.com/cocoonhost/cocoon/host/backend/plugin"
)

func init() {
	register("backend", "serve a built-in backend as a plugin process (the host runs this, not you)", serveBackend)
}

// backendKinds builds the built-in backends that the host can run out of process, from
// a model folder.
var backendKinds = map[string]func(modelDir string) (backend.Backend, error){
	"embedded": func(dir string) (backend.Backend, error) { return embedded.New(dir) },
}

// serveBackend is the plugin side of a built-in backend: the host re-executes its own
// binary with these arguments (plugin.SelfCommand) and talks to it through plugin.Launch,
// so that a crash of the engine never takes the host down.
func serveBackend(args []string, _, stderr io.Writer) error {
	kinds := slices.Sorted(maps.Keys(backendKinds))
	fs := newFlagSet("backend --kind KIND [--model-dir DIR]", stderr)
	kind := fs.String("kind", "", "the backend to serve: "+strings.Join(kinds, ", "))
	modelDir := fs.String("model-dir", "", "model folder (default $COCOON_MODEL_DIR, then DATA/models/"+defaultModel+")")
	data := fs.String("data", defaultDataDir(), "data directory ($COCOON_DATA_DIR)")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	open, ok := backendKinds[*kind]
	if !ok {
		return cli.UsageError(fmt.Sprintf("--kind must be one of: %s", strings.Join(kinds, ", ")))
	}
	// Refuse before loading a model that nobody would use: go-plugin would only say
	// so after it.
	if os.Getenv(plugin.Handshake.MagicCookieKey) != plugin.Handshake.MagicCookieValue {
		return cli.UsageError("this command serves a backend to the host through a plugin handshake; the host runs it, it is not run by hand (try 'cocoon-host generate' to check a model)")
	}
	b, err := open(modelDirectory(*modelDir, *data))
	if err != nil {
		return err
	}
	plugin.Serve(b)
	return nil
}
