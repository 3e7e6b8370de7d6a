package tonnet

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/internal/nettest"
	"github.com/cocoonhost/cocoon/settle/tonemu"
)

// writeConfig writes a global config listing one liteserver at addr.
func writeConfig(t *testing.T, addr string) string {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(nil)
	cfg, err := tonemu.GlobalConfig(addr, key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(cfg)
	path := filepath.Join(t.TempDir(), "ton-config.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// A config whose liteservers are down, or speak another protocol, fails in words that
// say the network cannot be reached, not with the library's last low-level error.
func TestDialUnreachable(t *testing.T) {
	closed := nettest.FreeLoopback(t)
	web := httptest.NewServer(http.NotFoundHandler())
	defer web.Close()
	for name, addr := range map[string]string{"closed port": closed, "HTTP server": strings.TrimPrefix(web.URL, "http://")} {
		t.Run(name, func(t *testing.T) {
			path := writeConfig(t, addr)
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			_, _, err := Dial(ctx, path)
			if err == nil || !strings.Contains(err.Error(), "cannot reach any liteserver of ton_config "+path) {
				t.Fatalf("Dial: %v; want it to say no liteserver can be reached", err)
			}
		})
	}
}
