package scripts

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// demoBillingMarker precedes the README's block of the demo's commands.
const demoBillingMarker = "<!-- demo-billing:"

// readmeDemoSteps returns the cocoon, cocoon-host and curl commands of the README's
// "Trying billing locally" block, without their trailing comments.
func readmeDemoSteps(readme string) ([]string, error) {
	_, after, ok := strings.Cut(readme, demoBillingMarker)
	if !ok {
		return nil, os.ErrNotExist
	}
	_, block, _ := strings.Cut(after, "```sh\n")
	block, _, _ = strings.Cut(block, "```")
	var steps []string
	for line := range strings.Lines(block) {
		command, _, _ := strings.Cut(strings.TrimSpace(line), "  #")
		command = strings.TrimSpace(command)
		switch first, _, _ := strings.Cut(command, " "); first {
		case "cocoon", "cocoon-host", "curl":
			steps = append(steps, command)
		}
	}
	return steps, nil
}

// scriptStep is a `step NAME COMMAND` or `start NAME COMMAND` line of demo-billing.sh.
var scriptStep = regexp.MustCompile(`^\s*(?:step|start) \S+ (.+)$`)

// quotedVar is a double-quoted shell variable, "$NAME".
var quotedVar = regexp.MustCompile(`"(\$[A-Z]+)"`)

// demoReadmeValues are what the script's variables stand for in the README: its fixed
// ports and the model beside the repository. $ESCROW is $ESCROW in both.
var demoReadmeValues = strings.NewReplacer(
	"$LITE", "127.0.0.1:46732",
	"$ADMIN", "127.0.0.1:46733",
	"$LISTEN", "127.0.0.1:8081",
	"$HOST", "http://127.0.0.1:8081",
	"$MODEL", "../shared/models/stories260K",
)

// scriptDemoSteps returns the commands the script runs, in order, written as the README
// writes them.
func scriptDemoSteps(script string) []string {
	var steps []string
	for line := range strings.Lines(script) {
		m := scriptStep.FindStringSubmatch(strings.TrimRight(line, "\n"))
		if m == nil {
			continue
		}
		steps = append(steps, demoReadmeValues.Replace(quotedVar.ReplaceAllString(m[1], "$1")))
	}
	return steps
}

// The README's billing walkthrough is what make demo-billing runs: the same commands
// in the same order, so that the commands a user types are the ones CI has run.
func TestDemoBillingMatchesReadme(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile("demo-billing.sh")
	if err != nil {
		t.Fatal(err)
	}
	want, err := readmeDemoSteps(string(readme))
	if err != nil {
		t.Fatalf("README.md has no %q block", demoBillingMarker)
	}
	got := scriptDemoSteps(string(script))
	if len(want) < 10 {
		t.Fatalf("README block has %d commands; the walkthrough has more", len(want))
	}
	if !slices.Equal(got, want) {
		for i := range max(len(got), len(want)) {
			var g, w string
			if i < len(got) {
				g = got[i]
			}
			if i < len(want) {
				w = want[i]
			}
			if g != w {
				t.Errorf("step %d:\n script: %s\n README: %s", i+1, g, w)
			}
		}
	}
}

// A difference of one flag, one step more or the steps out of order is caught.
func TestDemoBillingMismatch(t *testing.T) {
	readme := demoBillingMarker + " -->\n```sh\ngo build ./...\ncocoon-host devnet --data d --listen 127.0.0.1:46732   # one\nESCROW=EQ...\ncocoon chat --host http://127.0.0.1:8081 --escrow $ESCROW \"Once\"\ncurl -fsS \"http://127.0.0.1:46733/v1/time\"\n```\n"
	same := "start devnet cocoon-host devnet --data d --listen \"$LITE\"\nESCROW=$(x)\n\tstep chat cocoon chat --host \"$HOST\" --escrow \"$ESCROW\" \"Once\"\nstep time curl -fsS \"http://$ADMIN/v1/time\"\n"
	want, err := readmeDemoSteps(readme)
	if err != nil {
		t.Fatal(err)
	}
	if got := scriptDemoSteps(same); !slices.Equal(got, want) {
		t.Fatalf("the same steps differ:\n%q\n%q", got, want)
	}
	for name, script := range map[string]string{
		"a flag more":  strings.Replace(same, "--data d", "--data d --fund 1", 1),
		"a step more":  same + "step again curl -fsS \"http://$ADMIN/v1/time\"\n",
		"out of order": "step chat cocoon chat --host \"$HOST\" --escrow \"$ESCROW\" \"Once\"\nstart devnet cocoon-host devnet --data d --listen \"$LITE\"\nstep time curl -fsS \"http://$ADMIN/v1/time\"\n",
		"another port": strings.Replace(same, "$LITE", "$ADMIN", 1),
	} {
		if got := scriptDemoSteps(script); slices.Equal(got, want) {
			t.Errorf("%s: not caught", name)
		}
	}
}
