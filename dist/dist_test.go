// Package dist holds what operators install beside the binaries (the systemd unit and
// its TDX drop-in) and the tests that hold them to their hardening.
package dist

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// unit is a systemd unit file: section, then key, then its values in order (an empty
// value resets the list, as systemd reads it).
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	lines := bufio.NewScanner(f)
	for n := 1; lines.Scan(); n++ {
		line := strings.TrimSpace(lines.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			key, value, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value in a section: %q", path, n, line)
			}
			u[section][key] = append(u[section][key], value)
		}
	}
	return u
}

// last is key's value as systemd applies it: the last one.
func (u unit) last(section, key string) (string, bool) {
	v := u[section][key]
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

// TestServiceHardening holds the unit to the hardening dist/README.md promises: a
// weakened or removed option fails, and so does MemoryDenyWriteExecute, which would
// stop wazero's compiler from running any module.
func TestServiceHardening(t *testing.T) {
	u := parseUnit(t, "cocoon-host.service")
	for _, tt := range []struct{ key, want string }{
		{"DynamicUser", "yes"},
		{"StateDirectory", "cocoon-host"},
		{"StateDirectoryMode", "0700"},
		{"UMask", "0077"},
		{"ProtectSystem", "strict"},
		{"ProtectHome", "yes"},
		{"PrivateTmp", "yes"},
		{"PrivateDevices", "yes"},
		{"NoNewPrivileges", "yes"},
		{"CapabilityBoundingSet", ""},
		{"RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"},
		{"RestrictNamespaces", "yes"},
		{"RestrictSUIDSGID", "yes"},
		{"LockPersonality", "yes"},
		{"SystemCallArchitectures", "native"},
		{"SystemCallFilter", "@system-service"},
		{"ProtectKernelTunables", "yes"},
		{"ProtectKernelModules", "yes"},
		{"ProtectControlGroups", "yes"},
	} {
		if got, ok := u.last("Service", tt.key); !ok || got != tt.want {
			t.Errorf("%s=%q (set: %v); want %q", tt.key, got, ok, tt.want)
		}
	}
	if v, ok := u.last("Service", "MemoryDenyWriteExecute"); ok && v != "no" {
		t.Errorf("MemoryDenyWriteExecute=%s: wazero writes the machine code it compiles and then executes it", v)
	}
	exec, _ := u.last("Service", "ExecStart")
	if !strings.HasPrefix(exec, "/usr/local/bin/cocoon-host serve --data /var/lib/cocoon-host ") {
		t.Errorf("ExecStart=%s: want cocoon-host serve with the state directory as its data (make install rewrites the path)", exec)
	}
}

// TestTDXDropIn holds the TDX drop-in to opening only what the guest driver needs: no
// capability comes back, and the only device is the guest's.
func TestTDXDropIn(t *testing.T) {
	base := parseUnit(t, "cocoon-host.service")
	u := parseUnit(t, "tdx.conf")
	for _, key := range []string{"CapabilityBoundingSet", "AmbientCapabilities", "NoNewPrivileges", "SystemCallFilter", "RestrictAddressFamilies", "ProtectSystem"} {
		if v, ok := u.last("Service", key); ok {
			t.Errorf("tdx.conf overrides %s=%s: it must keep the unit's", key, v)
		}
		if _, ok := base.last("Service", key); !ok {
			t.Errorf("the unit has no %s for tdx.conf to keep", key)
		}
	}
	if got := u["Service"]["DeviceAllow"]; len(got) != 1 || got[0] != "/dev/tdx_guest rw" {
		t.Errorf("DeviceAllow=%q; want only /dev/tdx_guest", got)
	}
	if v, _ := u.last("Service", "DevicePolicy"); v != "closed" {
		t.Errorf("DevicePolicy=%q; want closed", v)
	}
	if v, _ := u.last("Service", "ExecStart"); !strings.Contains(v, " --attest tdx ") || !strings.Contains(v, "--sealing-key-file /run/") {
		t.Errorf("ExecStart=%s: want --attest tdx and a sealing key in memory", v)
	}
}

// TestServiceFlags checks that every flag the unit and the drop-in pass is one
// cocoon-host serve has: a renamed flag would stop the service from starting.
func TestServiceFlags(t *testing.T) {
	help, _ := exec.Command("go", "run", "../cmd/cocoon-host", "serve", "--help").CombinedOutput()
	for _, file := range []string{"cocoon-host.service", "tdx.conf"} {
		line, _ := parseUnit(t, file).last("Service", "ExecStart")
		for _, field := range strings.Fields(line) {
			if name, ok := strings.CutPrefix(field, "--"); ok && !strings.Contains(string(help), "\n  --"+name+" ") {
				t.Errorf("%s: serve has no flag --%s", file, name)
			}
		}
	}
}

// TestServiceVerifies runs systemd-analyze verify on the unit and the drop-in as make
// install writes them (ExecStart pointed at an existing program): it rejects unknown
// or misspelt options. Skipped where systemd-analyze is missing.
func TestServiceVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	dir := t.TempDir()
	program, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"cocoon-host.service", "tdx.conf"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, "cocoon-host.service")
		if file == "tdx.conf" {
			dst = filepath.Join(dir, "cocoon-host.service.d", file)
			os.MkdirAll(filepath.Dir(dst), 0o755)
		}
		if err := os.WriteFile(dst, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/cocoon-host", program)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(analyze, "verify", filepath.Join(dir, "cocoon-host.service"))
	cmd.Env = append(os.Environ(), "SYSTEMD_UNIT_PATH="+dir+":")
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
