// Package cli is the small command-line framework of cocoon and cocoon-host:
// subcommands with their own flag sets, --help and `help COMMAND` everywhere (to
// standard output, exit 0), --version, flags spelled --flag in every help text and
// error, and exit codes that tell a usage mistake (2) from a failure (1). Errors go to
// standard error, never help: a script that pipes a command's output gets the help it
// asked for and nothing else.
package cli

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/cocoonhost/cocoon/internal/secretfile"
)

// Version names the release of this source, for both binaries. It is a constant in the
// source, not a stamp from the build, so that every checkout of a release builds the
// same bytes (README, "Rebuilding the host"). It says which source to rebuild; only
// the measurement that `cocoon-host version` prints next to it says which bytes run.
const Version = "0.11.0"

// Command is one subcommand. Run parses its own flags from args.
type Command struct {
	Name    string
	Summary string
	Run     func(args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

// UsageError is a command line that cannot be run as written; Main prints it and
// exits with 2.
type UsageError string

func (e UsageError) Error() string { return string(e) }

// helpRequested is what Parse returns for --help: the command's help, which Main
// prints to standard output. It matches flag.ErrHelp under errors.Is.
type helpRequested struct{ text string }

func (h *helpRequested) Error() string { return flag.ErrHelp.Error() }
func (h *helpRequested) Unwrap() error { return flag.ErrHelp }

// Main runs the command named by args[0] and returns the process exit code: 0 on
// success or help, 1 on failure, 2 on a usage error. about is the first line of the
// program's help. `help` and --help print the program's help, `help COMMAND...` a
// command's (as COMMAND... --help does), both to stdout; --version (or -version) as
// the first argument runs the command named version.
func Main(program, about string, commands []Command, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		usage(stderr, program, about, commands)
		return 2
	case len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help"):
		usage(stdout, program, about, commands)
		return 0
	case args[0] == "help":
		args = append(args[1:], "--help")
	case args[0] == "--version" || args[0] == "-version":
		args = append([]string{"version"}, args[1:]...)
	}
	for _, c := range commands {
		if c.Name != args[0] {
			continue
		}
		err := c.Run(args[1:], stdin, stdout, stderr)
		var help *helpRequested
		var ue UsageError
		switch {
		case errors.As(err, &help):
			io.WriteString(stdout, help.text)
			return 0
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &ue):
			fmt.Fprintf(stderr, "%s %s: %v\nRun '%s help %s' for its usage.\n", program, c.Name, err, program, c.Name)
			return 2
		default:
			fmt.Fprintf(stderr, "%s %s: %v\n", program, c.Name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "%s: unknown command %q\n\n", program, args[0])
	usage(stderr, program, about, commands)
	return 2
}

// usage prints the program's help: its commands in one aligned column.
func usage(w io.Writer, program, about string, commands []Command) {
	width := 0
	for _, c := range commands {
		width = max(width, len(c.Name))
	}
	fmt.Fprintf(w, "%s\n\nUsage: %s COMMAND [flags] [args]\n\nCommands:\n", about, program)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.Name, c.Summary)
	}
	fmt.Fprintf(w, "\nRun '%s help COMMAND' (or '%s COMMAND --help') for a command's flags.\n", program, program)
}

// VersionLine is "PROGRAM VERSION GOVERSION GOOS/GOARCH": the release and the toolchain
// and platform this binary was built with.
func VersionLine(program string) string {
	return fmt.Sprintf("%s %s %s %s/%s", program, Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// VersionCommand is a version command that prints VersionLine and takes no arguments,
// for a program with nothing more to say about its build.
func VersionCommand(program string) Command {
	return Command{Name: "version", Summary: "print the version (also --version)",
		Run: func(args []string, _ io.Reader, stdout, stderr io.Writer) error {
			fs := NewFlagSet(program, "version\n\nPrints the version, and the Go toolchain and platform this binary was built with.", stderr)
			if err := ParseFlags(fs, args); err != nil {
				return err
			}
			_, err := fmt.Fprintln(stdout, VersionLine(program))
			return err
		}}
}

// NewFlagSet returns a flag set for "program usageText" that reports errors instead
// of exiting. Parse turns --help into the help text ("Usage: program usageText" and the
// flags, spelled --flag) that Main prints to stdout; output is where fs.Usage writes
// when called directly.
func NewFlagSet(program, usageText string, output io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(program, flag.ContinueOnError)
	fs.SetOutput(output)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s %s\n", program, usageText)
		printDefaults(fs)
	}
	return fs
}

// printDefaults is flag.PrintDefaults with flags spelled --flag, as every usage text
// and document of ours spells them (the flag package accepts both).
func printDefaults(fs *flag.FlagSet) {
	var b strings.Builder
	fs.VisitAll(func(f *flag.Flag) {
		name, text := flag.UnquoteUsage(f)
		fmt.Fprintf(&b, "  --%s", f.Name)
		if name != "" {
			fmt.Fprintf(&b, " %s", name)
		}
		b.WriteString("\n    \t")
		b.WriteString(strings.ReplaceAll(text, "\n", "\n    \t"))
		if d := f.DefValue; d != "" && d != "0" && d != "0s" && d != "false" && d != "[]" {
			if fmt.Sprintf("%T", f.Value) == "*flag.stringValue" {
				fmt.Fprintf(&b, " (default %q)", d)
			} else {
				fmt.Fprintf(&b, " (default %v)", d)
			}
		}
		b.WriteByte('\n')
	})
	io.WriteString(fs.Output(), b.String())
}

// dashes respells the flag package's "-name" in its error messages as "--name".
var dashes = strings.NewReplacer(": -", ": --", "flag -", "flag --", "for -", "for --")

// Parse parses flags that may come before or after positional arguments, as in
// `cocoon run FILE.wasm --hook pre`, and returns the positional ones. Flag errors are
// UsageErrors naming the flag as --flag; --help returns an error that matches
// flag.ErrHelp and carries the help text for Main to print.
func Parse(fs *flag.FlagSet, args []string) ([]string, error) {
	output := fs.Output()
	defer fs.SetOutput(output)
	var help bytes.Buffer
	fs.SetOutput(&help) // the flag package prints usage on --help and on errors
	var positional []string
	for {
		help.Reset()
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, &helpRequested{text: help.String()}
			}
			return nil, UsageError(dashes.Replace(err.Error()))
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// ParseFlags is Parse for commands that take no positional arguments.
func ParseFlags(fs *flag.FlagSet, args []string) error {
	positional, err := Parse(fs, args)
	if err == nil && len(positional) > 0 {
		err = UsageError(fmt.Sprintf("unexpected argument %q", positional[0]))
	}
	return err
}

// SecretFlag defines a string flag for a secret, such as an API key, whose default is
// the environment variable env. Its help names the variable, never its value (a flag's
// default is printed by --help, which lands in terminals and logs). The returned
// function, called once fs is parsed, gives the flag's value, or the variable's when the
// flag is not given or empty.
//
// A secret given as the flag is in the process's arguments, which every user of the
// machine reads (ps, /proc/PID/cmdline) for as long as the process runs: the first call
// of the returned function then warns on fs.Output() (standard error), naming the flag
// and the variable, never the value. It still uses the value, so that scripts keep
// working.
func SecretFlag(fs *flag.FlagSet, name, env, usage string) func() string {
	v := fs.String(name, "", usage+" (default $"+env+"; given as --"+name+", other users of this machine can read it)")
	var warned bool
	return func() string {
		if *v == "" {
			return os.Getenv(env)
		}
		if !warned {
			warned = true
			fmt.Fprintf(fs.Output(), "warning: --%s on the command line can be read by every user of this machine (ps, /proc/PID/cmdline); set $%s instead\n", name, env)
		}
		return *v
	}
}

// ReadPrivateFile reads a file that holds a secret (a key, a wallet's seed words, a
// token), refusing one that users other than its owner may read (secretfile.CheckMode,
// the check seal.FromFile makes too): on a shared machine they would read the secret
// too, as ssh refuses such a private key. The error says how to fix the mode and never
// holds the file's content. Where permissions are not Unix ones (Windows) it only reads.
func ReadPrivateFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := secretfile.CheckMode(path, info); err != nil {
		return nil, fmt.Errorf("%s holds a secret but %w", path, err)
	}
	return io.ReadAll(f)
}
