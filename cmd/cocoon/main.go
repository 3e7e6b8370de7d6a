// Command cocoon is the client CLI of Cocoon host for module authors and reviewers.
//
//	cocoon measure FILE.wasm...     print each module's identity, sha256:<hex> of its bytes
//	cocoon measure --weights DIR    print a model weights folder's identity, sha256-tree:<hex>
//	cocoon validate FILE.wasm...    check modules against the host ABI, as an upload would
//	cocoon run FILE.wasm --hook pre|post|chunk < input
//	                                run a module in the host's own sandbox
//	cocoon init --lang go|c DIR     scaffold a new module
//	cocoon push --pre A.wasm --post B.wasm   upload a pipeline to a host, print its id
//	cocoon pipeline-id --pre A.wasm --model M  compute a pipeline's id locally, as push builds it
//	cocoon pipelines [show ID]      list a host's pipelines, or print one's manifest
//	cocoon logs --pipeline ID       the module logs of a pipeline's recent failed requests (its owners)
//	cocoon chat --pipeline ID [PROMPT]       stream a chat completion through a pipeline
//	cocoon verify [--pipeline ID] [--policy FILE]  verify a host's attestation evidence
//	cocoon proxy --pipeline ID --hosts A,B   serve a local OpenAI API over verified hosts, checking every answer
//	cocoon channel open|deposit|status|withdraw  pay a host through a TON escrow
//	cocoon receipts --host URL --escrow ADDR     fetch and verify an escrow's receipts
//	cocoon wallet new --out FILE    create a TON wallet seed file, print its address
//	cocoon version (or --version)   print the version, Go toolchain and platform
//
// The client commands talk to --host (or COCOON_HOST, default http://127.0.0.1:8080)
// with --api-key (or COCOON_API_KEY, whose value --help never shows), or sign requests
// with an escrow's client key.
//
// Run `cocoon help COMMAND` for a command's flags.
package main

import (
	"io"
	"os"

	"github.com/cocoonhost/cocoon/cmd/internal/cli"
)

var commands = []cli.Command{
	{Name: "measure", Summary: "print the sha256: identity of modules", Run: measure},
	{Name: "validate", Summary: "check modules against the host ABI", Run: validate},
	{Name: "run", Summary: "run a module's hook in the host's sandbox", Run: run},
	{Name: "init", Summary: "scaffold a new module from a template", Run: initModule},
	{Name: "push", Summary: "upload a pipeline to a host, print its id", Run: push},
	{Name: "pipeline-id", Summary: "compute a pipeline's id locally, and write its manifest", Run: pipelineID},
	{Name: "pipelines", Summary: "list a host's pipelines, or show one's manifest", Run: pipelines},
	{Name: "logs", Summary: "print the module logs of a pipeline's recent failed requests", Run: logs},
	{Name: "chat", Summary: "chat through a pipeline, streaming the answer", Run: chat},
	{Name: "verify", Summary: "verify a host's attestation, and a pipeline's", Run: verify},
	{Name: "proxy", Summary: "serve a local OpenAI API over a pipeline's hosts: verifies each, routes, checks every answer", Run: serveProxy},
	{Name: "channel", Summary: "open, fund, inspect and withdraw a TON escrow that pays a host", Run: channel},
	{Name: "receipts", Summary: "fetch and verify an escrow's receipts", Run: receipts},
	{Name: "wallet", Summary: "create a TON wallet: a seed file and its address", Run: walletCmd},
	cli.VersionCommand("cocoon"),
}

func main() {
	os.Exit(runCommand(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// runCommand runs one command line and returns the exit code: 0 success, 1 failure,
// 2 usage error.
func runCommand(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return cli.Main("cocoon", "cocoon: the Cocoon host client for module authors and reviewers.", commands, args, stdin, stdout, stderr)
}
