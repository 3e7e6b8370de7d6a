package main

import (
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	assdk "github.com/cocoonhost/cocoon/plugins/as-sdk"
	csdk "github.com/cocoonhost/cocoon/plugins/c-sdk"
)

// templates are the files of a new module: README.md.tmpl, and LANG/**.tmpl.
//
//go:embed templates
var templates embed.FS

// moduleName is what a module's directory may be called: the Makefile names the .wasm
// file after it.
var moduleName = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// languages are the values of init's --lang, as listed in its help.
var languages = map[string]string{"go": "Go", "c": "C", "as": "AssemblyScript"}

// sdkCopies are the SDKs embedded in this binary that a new module gets a copy of, by
// language, and where under DIR/LANG/. None is published (Go module proxy, npm), so a
// module built outside this repository needs its own copy; with it, the module's source
// alone rebuilds its bytes. A Go module's go.mod replaces github.com/cocoonhost/cocoon
// with its copy (templates/go/go.mod.tmpl); an AssemblyScript module's package.json
// links its copy (file:as-sdk) and its lock file records the link; a C module includes
// its copy of the headers.
var sdkCopies = map[string]struct {
	dir   string
	files fs.FS
}{
	"go": {"cocoon-sdk/abi", abi.GuestSDK},
	"c":  {".", csdk.Files},
	"as": {"as-sdk", assdk.Files},
}

// initModule scaffolds a pass-through pre module in DIR: DIR/README.md and DIR/LANG/,
// with the language's SDK copied in (sdkCopies), so that it builds anywhere with the
// language's compiler alone; under plugins/ in this repository, `make plugins` builds
// it too.
func initModule(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	flags := cli.NewFlagSet("cocoon", "init --lang go|c|as DIR\n\n"+
		"Creates a new pre module in DIR (which must not exist) that passes requests through, with a copy of the\n"+
		"language's SDK and a README on building, running and pushing it. It builds anywhere: nothing is downloaded\n"+
		"but an AssemblyScript module's pinned compiler.", stderr)
	lang := flags.String("lang", "go", "language of the module: go, c or as (AssemblyScript)")
	pos, err := cli.Parse(flags, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return cli.UsageError("want one DIR, the new module's directory")
	}
	dir := filepath.Clean(pos[0])
	name := filepath.Base(dir)
	if languages[*lang] == "" {
		return cli.UsageError(fmt.Sprintf("--lang %q: want go, c or as", *lang))
	}
	if !moduleName.MatchString(name) {
		return cli.UsageError(fmt.Sprintf("module name %q: use lowercase letters, digits and dashes, starting with a letter", name))
	}
	// Mkdir, not MkdirAll, for DIR itself: it fails if DIR exists, so nothing is
	// ever overwritten.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s already exists: choose a new directory", dir)
		}
		return err
	}
	data := struct{ Name, Lang, Language, Dir string }{name, *lang, languages[*lang], filepath.ToSlash(dir)}
	if err := writeTemplate(filepath.Join(dir, "README.md"), "templates/README.md.tmpl", data); err != nil {
		return err
	}
	err = fs.WalkDir(templates, path.Join("templates", *lang), func(src string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		dst := strings.TrimSuffix(strings.TrimPrefix(src, "templates/"), ".tmpl")
		return writeTemplate(filepath.Join(dir, filepath.FromSlash(dst)), src, data)
	})
	if err != nil {
		return err
	}
	sdk := sdkCopies[*lang]
	if err := copyFS(filepath.Join(dir, *lang, filepath.FromSlash(sdk.dir)), sdk.files); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Created %s, a pre module in %s that passes requests through; see %s.\n", dir, languages[*lang], filepath.Join(dir, "README.md"))
	return nil
}

// copyFS writes the files of src into the directory dst, never over a file, leaving
// out Go tests (the SDK's need this repository).
func copyFS(dst string, src fs.FS) error {
	return fs.WalkDir(src, ".", func(name string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || strings.HasSuffix(name, "_test.go") {
			return err
		}
		b, err := fs.ReadFile(src, name)
		if err != nil {
			return err
		}
		return writeNew(filepath.Join(dst, filepath.FromSlash(name)), func(w io.Writer) error {
			_, err := w.Write(b)
			return err
		})
	})
}

// writeTemplate renders the embedded template src into a new file dst.
func writeTemplate(dst, src string, data any) error {
	t, err := template.ParseFS(templates, src)
	if err != nil {
		return err
	}
	return writeNew(dst, func(w io.Writer) error { return t.Execute(w, data) })
}

// writeNew creates the file dst, which must not exist, and its directory, and fills it
// with write.
func writeNew(dst string, write func(io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	err = write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
