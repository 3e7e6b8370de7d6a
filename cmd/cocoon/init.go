package main

import (
	"embed"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"

	"github.com/cocoonhost/cocoon/cmd/internal/cli"
)

// templates are the files of a new module: README.md.tmpl, and LANG/*.tmpl.
//
//go:embed templates
var templates embed.FS

// moduleName is what a module's directory may be called: the Makefile names the .wasm
// file after it.
var moduleName = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// initModule scaffolds a pass-through pre module in DIR: DIR/README.md and DIR/LANG/,
// the layout `make plugins` builds when DIR is under plugins/.
func initModule(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("cocoon", "init --lang go|c DIR\n\n"+
		"Creates a new pre module in DIR (which must not exist) that passes requests through, with a README on building,\n"+
		"running and pushing it. Under plugins/ in the repository, `make plugins` builds it.", stderr)
	lang := fs.String("lang", "go", "language of the module: go or c")
	pos, err := cli.Parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return cli.UsageError("want one DIR, the new module's directory")
	}
	dir := filepath.Clean(pos[0])
	name := filepath.Base(dir)
	if *lang != "go" && *lang != "c" {
		return cli.UsageError(fmt.Sprintf("--lang %q: want go or c", *lang))
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
	data := struct{ Name, Lang, Dir string }{name, *lang, filepath.ToSlash(dir)}
	files := map[string]string{"README.md.tmpl": "README.md"}
	entries, err := templates.ReadDir(path.Join("templates", *lang))
	if err != nil {
		return err
	}
	for _, e := range entries {
		files[path.Join(*lang, e.Name())] = filepath.Join(*lang, strings.TrimSuffix(e.Name(), ".tmpl"))
	}
	for src, dst := range files {
		if err := writeTemplate(filepath.Join(dir, dst), path.Join("templates", src), data); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "Created %s, a %s pre module that passes requests through; see %s.\n", dir, *lang, filepath.Join(dir, "README.md"))
	return nil
}

// writeTemplate renders the embedded template src into a new file dst.
func writeTemplate(dst, src string, data any) error {
	t, err := template.ParseFS(templates, src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	err = t.Execute(f, data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
