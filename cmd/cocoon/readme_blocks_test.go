package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/host"
)

// shellLangs are the fence languages of command blocks.
var shellLangs = []string{"sh", "bash", "console", "shell"}

// testNamed finds the test functions a README marker names.
var testNamed = regexp.MustCompile(`\bTest\w+`)

// TestReadmeCommandBlocks holds every command block of README.md to what it claims: a
// block runs as written against a real local host (the binaries of this tree on PATH,
// sim attestation, the shared model, free ports, a scratch directory), or is a list of
// go test commands whose benchmarks and tests must exist, or the HTML comment before it
// names the tests that run it instead (and those tests must exist). A block with
// neither fails, named by its first line. The Node.js example runs with the OpenAI SDK
// of web/testdata/openai-sdk when node is installed (CI installs both). A JSON block
// must be JSON, and its comment must name the test that loads it with the parser it
// documents (a policy, a --config file: strict, so a misspelled member fails there). A
// TypeScript block is AssemblyScript guest code, compiled with the compiler of the
// example module's lock file and checked against the host ABI, unless its comment
// names the test that covers it.
func TestReadmeCommandBlocks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and starts hosts: not in -short")
	}
	fences := readmeFences(t)
	tests := testFunctions(t, filepath.Join("..", ".."))
	env := newReadmeEnv(t)
	for i, f := range fences {
		name := fmt.Sprintf("line %d", f.line)
		switch {
		case f.lang == "js":
			t.Run(name, func(t *testing.T) {
				if _, err := exec.LookPath("node"); err != nil {
					t.Skip("node is not installed (CI installs it)")
				}
				env.runNode(t, f)
			})
		case f.lang == "json":
			t.Run(name, func(t *testing.T) { checkJSONBlock(t, f, tests) })
		case f.lang == "ts" && f.marker == "":
			t.Run(name, func(t *testing.T) { compileAssemblyScriptBlock(t, f) })
		case !slices.Contains(shellLangs, f.lang) && f.lang != "ts":
			continue // Go and output: checked by the tests their markers name, or not commands
		case f.marker != "":
			t.Run(name, func(t *testing.T) { checkMarker(t, f, tests) })
		case isGoTestBlock(f.lines):
			t.Run(name, func(t *testing.T) { checkGoTestBlock(t, f) })
		default:
			t.Run(name, func(t *testing.T) {
				env.run(t, f, fences[:i])
			})
		}
	}
}

// checkMarker fails unless the HTML comment before f names tests, each a test of this
// repository.
func checkMarker(t *testing.T, f readmeFence, tests map[string]bool) {
	t.Helper()
	first := strings.Join(f.lines[:min(1, len(f.lines))], "")
	named := testNamed.FindAllString(f.marker, -1)
	if len(named) == 0 {
		t.Fatalf("the block %q: its comment %q names no test that runs it", first, f.marker)
	}
	for _, test := range named {
		if !tests[test] {
			t.Errorf("the block %q: its comment names %s, which is no test of this repository", first, test)
		}
	}
}

// checkJSONBlock fails unless f is one JSON value, and its comment names the tests
// that load it with the parser it documents.
func checkJSONBlock(t *testing.T, f readmeFence, tests map[string]bool) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(strings.Join(f.lines, "\n")))
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("the JSON block of line %d is not JSON: %v", f.line, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("the JSON block of line %d holds more than one JSON value", f.line)
	}
	if f.marker == "" {
		t.Fatalf("the JSON block of line %d: no comment before it names the test that loads it with the parser it documents (<!-- NAME: TestX loads this block -->)", f.line)
	}
	checkMarker(t, f, tests)
}

// compileAssemblyScriptBlock compiles the TypeScript block f as an AssemblyScript
// module with the SDK (plugins/as-sdk) and the compiler the example module's lock file
// pins (installed by make plugins), then checks the module as a host does at upload.
func compileAssemblyScriptBlock(t *testing.T, f readmeFence) {
	t.Helper()
	code := strings.Join(f.lines, "\n")
	if !strings.Contains(code, `"@cocoonhost/as-sdk`) {
		t.Fatalf("the TypeScript block of line %d imports no @cocoonhost/as-sdk, so it is no module: name the test that runs it in a comment before it", f.line)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed (CI installs it)")
	}
	modules, err := filepath.Abs(filepath.Join("..", "..", "plugins", "prompt-template", "as", "node_modules"))
	if err != nil {
		t.Fatal(err)
	}
	asc := filepath.Join(modules, "assemblyscript", "bin", "asc.js")
	if _, err := os.Stat(asc); err != nil {
		t.Fatalf("the AssemblyScript compiler is not installed: run make plugins, which installs it from plugins/prompt-template/as/package-lock.json (%v)", err)
	}
	dir := t.TempDir()
	if err := os.Symlink(modules, filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "assembly"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(dir, "assembly"), "index.ts", code)
	writeTestFile(t, dir, "asconfig.json", `{"extends": "./node_modules/@cocoonhost/as-sdk/asconfig.json", "targets": {"release": {"outFile": "block.wasm"}}}`)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "node", asc, "assembly/index.ts", "--config", "asconfig.json")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("the TypeScript block of line %d does not compile with asc: %v\n%s", f.line, err, out)
	}
	wasm, err := os.ReadFile(filepath.Join(dir, "block.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	sandbox, err := host.NewSandbox(ctx, host.NewSandboxConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer sandbox.Close(ctx)
	if _, err := sandbox.Compile(ctx, wasm); err != nil {
		t.Fatalf("the TypeScript block of line %d compiles to a module a host refuses: %v", f.line, err)
	}
}

// testFunctions returns the names of the test functions under root.
func testFunctions(t *testing.T, root string) map[string]bool {
	t.Helper()
	decl := regexp.MustCompile(`(?m)^func (Test\w+)\(`)
	names := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range decl.FindAllStringSubmatch(string(b), -1) {
			names[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// commandLines returns the commands of a shell block: continuation lines joined,
// blank lines and comment lines left out.
func commandLines(lines []string) []string {
	var commands []string
	var cur strings.Builder
	for _, line := range lines {
		if cur.Len() == 0 && (strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#")) {
			continue
		}
		if before, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(before)
			continue
		}
		cur.WriteString(line)
		commands = append(commands, cur.String())
		cur.Reset()
	}
	return commands
}

// isGoTestBlock reports whether every command of a block is a go test command.
func isGoTestBlock(lines []string) bool {
	commands := commandLines(lines)
	for _, c := range commands {
		if !strings.Contains(c, "go test ") {
			return false
		}
	}
	return len(commands) > 0
}

// checkGoTestBlock runs each go test command of f with -list instead of -bench (or -run
// when it runs tests): in each package it names, the pattern must select something, and
// each alternative of the pattern must select something in one of them, so that a
// renamed benchmark or test fails here rather than running nothing.
func checkGoTestBlock(t *testing.T, f readmeFence) {
	for _, command := range commandLines(f.lines) {
		// bash parses the command; a go function records the arguments it would get.
		script := "go() { printf '%s\\0' \"$@\"; }\n" + command
		out, err := exec.Command("bash", "-c", script).Output()
		if err != nil {
			t.Fatalf("the README command %q: %v", command, err)
		}
		args := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
		var pattern string
		var packages []string
		for i := 1; i < len(args); i++ {
			switch args[i] {
			case "-bench":
				pattern = args[i+1]
				i++
			case "-run":
				if pattern == "" && args[i+1] != "^$" {
					pattern = args[i+1]
				}
				i++
			case "-benchtime", "-count", "-benchmem", "-v":
				if args[i] == "-benchtime" || args[i] == "-count" {
					i++
				}
			default:
				if strings.HasPrefix(args[i], "./") {
					packages = append(packages, args[i])
				}
			}
		}
		if args[0] != "test" || pattern == "" || len(packages) == 0 {
			t.Fatalf("the README command %q: want go test with -bench or -run and packages, got %q", command, args)
		}
		// go test -list lists top-level names only: check the pattern's first level
		// (BenchmarkPipeline of BenchmarkPipeline/(native|c|go)$).
		pattern = splitTopLevel(pattern, '/')[0]
		var listed []string
		for _, pkg := range packages {
			list := exec.Command("go", "test", "-list", pattern, pkg)
			list.Dir = filepath.Join("..", "..")
			out, err := list.CombinedOutput()
			if err != nil {
				t.Fatalf("go test -list %q %s: %v\n%s", pattern, pkg, err, out)
			}
			var names []string
			for _, line := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(line, "Test") || strings.HasPrefix(line, "Benchmark") {
					names = append(names, line)
				}
			}
			if len(names) == 0 {
				t.Errorf("the README command %q: %q selects nothing in %s", command, pattern, pkg)
			}
			listed = append(listed, names...)
		}
		for _, alt := range splitTopLevel(pattern, '|') {
			re := regexp.MustCompile(alt)
			if !slices.ContainsFunc(listed, re.MatchString) {
				t.Errorf("the README command %q: %q selects no test or benchmark", command, alt)
			}
		}
	}
}

// splitTopLevel splits a go test pattern at each sep outside parentheses and brackets,
// as go test splits -run and -bench at "/".
func splitTopLevel(pattern string, sep byte) []string {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; {
		case c == '\\':
			i++ // an escaped character is never a separator
		case c == '(' || c == '[':
			depth++
		case c == ')' || c == ']':
			depth--
		case c == sep && depth == 0:
			parts = append(parts, pattern[start:i])
			start = i + 1
		}
	}
	return append(parts, pattern[start:])
}

// readmeEnv is where the README's blocks run: the binaries of this tree, a scratch copy
// of the repository's layout (its top-level entries linked, the model beside it as
// ../shared/models/stories260K), and the host `make run` would start, listening where
// the README's 127.0.0.1:8080 is mapped to.
type readmeEnv struct {
	bin      string            // cocoon and cocoon-host
	work     string            // the repository's root, as the blocks see it
	ports    map[string]string // README address -> a free one
	key      string            // the API key of the make run host
	pipeline string            // its example pipeline
}

// newReadmeEnv builds the binaries, lays out the scratch directory and starts the
// make run host; the host is stopped when t's test ends.
func newReadmeEnv(t *testing.T) *readmeEnv {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	model := os.Getenv("COCOON_MODEL_DIR")
	if model == "" {
		model = filepath.Join(root, "..", "shared", "models", "stories260K")
	}
	if _, err := os.Stat(filepath.Join(model, "stories260K.bin")); err != nil {
		t.Fatalf("the model: %v (set COCOON_MODEL_DIR)", err)
	}
	if _, err := os.Stat(filepath.Join(root, "plugins", "pii-redactor", "go", "pii-redactor.wasm")); err != nil {
		t.Fatalf("the example module is not built: run make plugins (%v)", err)
	}
	scratch := t.TempDir()
	e := &readmeEnv{bin: filepath.Join(scratch, "bin"), work: filepath.Join(scratch, "cocoon"), ports: map[string]string{}}
	build := exec.Command("go", "build", "-o", e.bin+"/", "./cmd/cocoon", "./cmd/cocoon-host")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(e.work, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, entry := range entries {
		// Not the data a make run of the checkout keeps, nor its builds.
		if strings.HasPrefix(entry.Name(), ".") || entry.Name() == "bin" {
			continue
		}
		if err := os.Symlink(filepath.Join(root, entry.Name()), filepath.Join(e.work, entry.Name())); err != nil {
			t.Fatal(err)
		}
	}
	models := filepath.Join(scratch, "shared", "models")
	if err := os.MkdirAll(models, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(model, filepath.Join(models, "stories260K")); err != nil {
		t.Fatal(err)
	}

	// make run: serve --data .cocoon with the model beside the repository.
	listen := e.port(t, "127.0.0.1:8080")
	data := filepath.Join(e.work, ".cocoon")
	serve := exec.Command(filepath.Join(e.bin, "cocoon-host"), "serve", "--data", data, "--model-dir", "../shared/models/stories260K", "--listen", listen)
	serve.Dir = e.work
	stdout, err := serve.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs, err := os.Create(filepath.Join(scratch, "host.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	serve.Stderr = logs
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { serve.Wait(); close(exited) }() // the host's one waiter
	t.Cleanup(func() {
		serve.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(time.Minute):
			serve.Process.Kill()
			<-exited
			t.Error("the make run host did not stop within a minute of SIGTERM")
		}
	})
	lines := bufio.NewScanner(stdout)
	for e.pipeline == "" && lines.Scan() {
		if id, ok := strings.CutPrefix(lines.Text(), "Example pipeline: "); ok {
			e.pipeline = id
		}
	}
	go func() {
		for lines.Scan() {
		}
	}() // until the host exits
	if e.pipeline == "" {
		b, _ := os.ReadFile(logs.Name())
		t.Fatalf("the make run host printed no example pipeline; logs:\n%s", b)
	}
	key, err := os.ReadFile(filepath.Join(data, "api-key"))
	if err != nil {
		t.Fatal(err)
	}
	e.key = strings.TrimSpace(string(key))
	return e
}

// port returns the free address that stands for the README's address addr, the same
// one every time.
func (e *readmeEnv) port(t *testing.T, addr string) string {
	t.Helper()
	if free, ok := e.ports[addr]; ok {
		return free
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := l.Addr().String()
	l.Close()
	e.ports[addr] = free
	return free
}

// readmeAddr is an address on loopback the README names.
var readmeAddr = regexp.MustCompile(`127\.0\.0\.1:\d+`)

// localize rewrites a README text for the scratch layout: go run of a program becomes
// the built program on PATH, which the README says is the same, and each loopback
// address the free one that stands for it.
func (e *readmeEnv) localize(t *testing.T, text string) string {
	text = strings.NewReplacer("go run ./cmd/cocoon-host", "cocoon-host", "go run ./cmd/cocoon", "cocoon").Replace(text)
	return readmeAddr.ReplaceAllStringFunc(text, func(addr string) string { return e.port(t, addr) })
}

// environ is the environment of a block: the built programs first on PATH, and the
// make run host in COCOON_HOST and COCOON_API_KEY, as the README tells its reader to set.
func (e *readmeEnv) environ(t *testing.T) []string {
	env := []string{"PATH=" + e.bin + string(os.PathListSeparator) + os.Getenv("PATH"),
		"COCOON_HOST=http://" + e.port(t, "127.0.0.1:8080"), "COCOON_API_KEY=" + e.key, "PIPELINE_ID=" + e.pipeline,
		"TMPDIR=" + t.TempDir()}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATH=") && !strings.HasPrefix(kv, "TMPDIR=") && !strings.HasPrefix(kv, "COCOON_") && !strings.HasPrefix(kv, "PIPELINE_ID=") && !strings.HasPrefix(kv, "OPENAI_") {
			env = append(env, kv)
		}
	}
	return env
}

// serverCommand matches the commands that stay in the foreground: the README gives each
// its own terminal; a block's run starts them in the background and waits until each
// prints its address.
var serverCommand = regexp.MustCompile(`^(make run\b|cocoon-host (serve|devnet)\b|\S*cocoon verify --web\b)`)

// readmeSetup prepares what a block's surrounding text says it needs, by the block's
// first command.
var readmeSetup = map[string]func(t *testing.T, e *readmeEnv, before []readmeFence){
	// "The commands take the code above as mymodule/main.go": the README's Go module.
	"GOOS=wasip1 GOARCH=wasm go build": func(t *testing.T, e *readmeEnv, before []readmeFence) {
		i := slices.IndexFunc(before, func(f readmeFence) bool { return f.lang == "go" })
		if i < 0 {
			t.Fatal("no Go module before the block that builds it")
		}
		dir := filepath.Join(e.work, "mymodule")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		// Gone after the block: a main package at the root of a checkout is not one of
		// its own, and `go build ./...` (make build) refuses to overwrite its directory.
		t.Cleanup(func() { os.RemoveAll(dir) })
		writeTestFile(t, dir, "main.go", strings.Join(before[i].lines, "\n"))
	},
}

// readmeAdapt rewrites what cannot run as written here, each for a reason the README
// gives: the test is not root, so it installs under a scratch DESTDIR, which the README
// names for packagers.
var readmeAdapt = map[string]string{
	"sudo make install": `make install DESTDIR="$(mktemp -d)"`,
}

// readmeOutput is what a block must print, by a command it holds, where the README says
// what that command prints.
var readmeOutput = map[string]*regexp.Regexp{
	"--hook chunk": regexp.MustCompile(`(?m)^What the \*\*\*\*,\nthat \*\*\*\* dog$`),
}

// run runs the shell block f under bash -euo pipefail in the scratch layout, its
// foreground programs in the background, and fails naming the block's first line.
func (e *readmeEnv) run(t *testing.T, f readmeFence, before []readmeFence) {
	commands := commandLines(f.lines)
	if len(commands) == 0 {
		t.Fatalf("the block of line %d has no command", f.line)
	}
	for prefix, setup := range readmeSetup {
		if strings.HasPrefix(commands[0], prefix) {
			setup(t, e, before)
		}
	}
	logs := t.TempDir()
	var script strings.Builder
	script.WriteString(`wait_for_address() { # log pid: until the program prints an address, for 2 minutes
  for _ in $(seq 600); do
    if grep -q 'http://' "$1"; then return 0; fi
    if ! kill -0 "$2" 2>/dev/null; then echo "exited before it printed its address:"; cat "$1"; return 1; fi
    sleep 0.2
  done
  echo "no address after 2 minutes:"; cat "$1"; return 1
}
`)
	for i, command := range commands {
		command = e.localize(t, command)
		for from, to := range readmeAdapt {
			command = strings.ReplaceAll(command, from, to)
		}
		if serverCommand.MatchString(command) {
			log := filepath.Join(logs, strconv.Itoa(i))
			fmt.Fprintf(&script, "(\n%s\n) >%s 2>&1 &\nwait_for_address %s $!\n", command, log, log)
			continue
		}
		script.WriteString(command + "\n")
	}
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script.String())
	cmd.Dir = e.work
	cmd.Env = e.environ(t)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its background programs: one group to stop
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(5 * time.Minute):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		t.Fatalf("the block %q ran for more than 5 minutes:\n%s", commands[0], out.String())
	}
	stopGroup(t, cmd.Process.Pid)
	if err != nil {
		t.Fatalf("the block %q, run as written: %v\n%s", commands[0], err, out.String())
	}
	for command, want := range readmeOutput {
		if strings.Contains(strings.Join(commands, "\n"), command) && !want.Match(out.Bytes()) {
			t.Errorf("the block %q printed no %q:\n%s", commands[0], want, out.String())
		}
	}
}

// stopGroup ends the programs a block left in the background (its foreground servers):
// SIGTERM, as a Ctrl-C in their terminal would, then SIGKILL after 30 s.
func stopGroup(t *testing.T, pgid int) {
	syscall.Kill(-pgid, syscall.SIGTERM)
	for deadline := time.Now().Add(30 * time.Second); syscall.Kill(-pgid, 0) == nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("a program the block started did not stop within 30 s of SIGTERM")
			syscall.Kill(-pgid, syscall.SIGKILL)
			return
		}
	}
}

// runNode runs the JavaScript block f as index.mjs with Node.js and the OpenAI SDK of
// web/testdata/openai-sdk against the make run host's example pipeline: it must stream
// text and exit 0.
func (e *readmeEnv) runNode(t *testing.T, f readmeFence) {
	sdk, err := filepath.Abs(filepath.Join("..", "..", "web", "testdata", "openai-sdk", "node_modules"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(sdk, "openai", "package.json")); err != nil {
		t.Fatal("the OpenAI SDK is not installed: run `npm ci --prefix web/testdata/openai-sdk` (make test does)")
	}
	dir := t.TempDir()
	if err := os.Symlink(sdk, filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, dir, "index.mjs", e.localize(t, strings.Join(f.lines, "\n")))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "index.mjs")
	cmd.Dir = dir
	cmd.Env = e.environ(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		t.Fatalf("node index.mjs with the README's code: %v, printed %q\n%s", err, out, stderr.String())
	}
}
