package settle

import (
	"os/exec"
	"strings"
	"testing"
)

// TestClientSideLinksNoHostCode holds the package line doc.go draws: settle (and
// web/client, the client built on it) must not depend on the host's side, so that a
// client links no ledger, settler, chain reader or metrics code and settle/billing can
// import settle without a cycle. It lists the packages' dependencies with the go
// command, which the tests' own toolchain provides.
func TestClientSideLinksNoHostCode(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list dependencies with")
	}
	hostOnly := []string{
		"github.com/cocoonhost/cocoon/settle/billing",
		"github.com/cocoonhost/cocoon/settle/ledger",
		"github.com/prometheus/client_golang/prometheus",
		"go.etcd.io/bbolt",
	}
	for _, pkg := range []string{"github.com/cocoonhost/cocoon/settle", "github.com/cocoonhost/cocoon/web/client"} {
		out, err := exec.Command(goCmd, "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		deps := strings.Fields(string(out))
		for _, dep := range deps {
			for _, bad := range hostOnly {
				if dep == bad {
					t.Errorf("%s depends on %s, the host's side", pkg, bad)
				}
			}
		}
	}
}
