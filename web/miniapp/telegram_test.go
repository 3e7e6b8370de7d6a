package miniapp

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// maxLaunchChars is static/telegram.js's bound on the launch parameters it reads.
const maxLaunchChars = 32 * 1024

// TestTelegramLaunch runs static/telegram.js under Node (testdata/telegram.mjs stands in
// for the browser) on real launches and on a link whose fragment is megabytes, which
// anyone can send a user: that fragment used to be parsed and stored whole, and storing
// it threw (sessionStorage's quota), so the app did not load.
func TestTelegramLaunch(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: install nodejs (apt-get install nodejs); CI installs it")
	}
	initData := url.Values{
		"user":          {`{"id":279058397,"first_name":"Владислав","last_name":"Кибенко","username":"vdkfrost","language_code":"ru","is_premium":true,"allows_write_to_pm":true,"photo_url":"https:\/\/t.me\/i\/userpic\/320\/4FPEE4tmP3ATHa57u6MqTDih13LTOiMoKoLDRG4PnSA.svg"}`},
		"chat_instance": {"8134722200314281151"},
		"chat_type":     {"private"},
		"start_param":   {strings.Repeat("s", 512)},
		"auth_date":     {"1733584787"},
		"signature":     {strings.Repeat("S", 86)},
		"hash":          {strings.Repeat("0", 64)},
	}.Encode()
	launch := url.Values{
		"tgWebAppData":        {initData},
		"tgWebAppVersion":     {"8.0"},
		"tgWebAppPlatform":    {"tdesktop"},
		"tgWebAppThemeParams": {`{"bg_color":"#17212b","button_color":"#5288c1","button_text_color":"#ffffff","hint_color":"#708499","link_color":"#6ab3f3","secondary_bg_color":"#232e3c","text_color":"#f5f5f5"}`},
	}.Encode()
	// A fragment of exactly n characters whose init data is "AAA...".
	padded := func(n int) (string, int) { return "tgWebAppData=", n - len("tgWebAppData=") }
	atBound, atBoundPad := padded(maxLaunchChars)
	overBound, overBoundPad := padded(maxLaunchChars + 1)
	huge, hugePad := padded(8 << 20)

	type input struct {
		Fragment string  `json:"fragment"`
		Pad      int     `json:"pad"`
		Stored   *string `json:"stored"`
	}
	type output struct {
		InitData    string          `json:"initData"`
		User        json.RawMessage `json:"user"`
		LaunchError string          `json:"launchError"`
		Stored      *string         `json:"stored"`
		UserText    string          `json:"userText"`
		Error       string          `json:"error"`
	}
	refusal := func(n int) string {
		return "carries " + strconv.Itoa(n) + " characters of launch parameters, more than the 32768"
	}
	tests := []struct {
		name     string
		in       input
		initData string // what the app sends as its credential
		stored   *string
		refusal  string // in launchError and in the page, '' if none
	}{
		{"a launch from Telegram", input{Fragment: launch}, initData, &launch, ""},
		{"a reload, which Telegram opens without a fragment", input{Stored: &launch}, initData, &launch, ""},
		{"outside Telegram", input{}, "", nil, ""},
		{"a fragment at the bound", input{Fragment: atBound, Pad: atBoundPad}, strings.Repeat("A", atBoundPad), ptr(atBound + strings.Repeat("A", atBoundPad)), ""},
		{"a fragment one character over the bound", input{Fragment: overBound, Pad: overBoundPad}, "", nil, refusal(maxLaunchChars + 1)},
		{"a fragment of 8 MiB", input{Fragment: huge, Pad: hugePad}, "", nil, refusal(8 << 20)},
		// The earlier launch is not used either: the URL claims a launch of its own.
		{"a fragment of 8 MiB after a launch", input{Fragment: huge, Pad: hugePad, Stored: &launch}, "", &launch, refusal(8 << 20)},
		{"a stored launch over the bound", input{Stored: ptr(overBound + strings.Repeat("A", overBoundPad))}, "", ptr(overBound + strings.Repeat("A", overBoundPad)), ""},
	}
	ins := make([]input, len(tests))
	for i, tt := range tests {
		ins[i] = tt.in
	}
	stdin, err := json.Marshal(ins)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "testdata/telegram.mjs")
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("node testdata/telegram.mjs: %v\n%s", err, stderr.Bytes())
	}
	var outs []output
	if err := json.Unmarshal(stdout, &outs); err != nil || len(outs) != len(tests) {
		t.Fatalf("node printed %d results (%v): %.200s", len(outs), err, stdout)
	}
	for i, tt := range tests {
		got := outs[i]
		if got.Error != "" {
			t.Errorf("%s: loading telegram.js threw %s", tt.name, got.Error)
			continue
		}
		if got.InitData != tt.initData {
			t.Errorf("%s: initData is %.80q (%d characters), want %.80q", tt.name, got.InitData, len(got.InitData), tt.initData)
		}
		if (got.Stored == nil) != (tt.stored == nil) || got.Stored != nil && *got.Stored != *tt.stored {
			t.Errorf("%s: sessionStorage holds %.80v, want %.80v", tt.name, deref(got.Stored), deref(tt.stored))
		}
		if tt.refusal == "" {
			if got.LaunchError != "" || got.UserText != "Not opened in Telegram." {
				t.Errorf("%s: refused (%q; the page says %q)", tt.name, got.LaunchError, got.UserText)
			}
		} else if !strings.Contains(got.LaunchError, tt.refusal) || got.UserText != got.LaunchError {
			t.Errorf("%s: launchError %q, the page says %q; want both saying %q", tt.name, got.LaunchError, got.UserText, tt.refusal)
		}
		if tt.initData == initData && !bytes.Contains(got.User, []byte(`"username":"vdkfrost"`)) {
			t.Errorf("%s: user is %s", tt.name, got.User)
		}
	}
}

func ptr(s string) *string { return &s }

func deref(s *string) string {
	if s == nil {
		return "nothing"
	}
	return *s
}
