package bridge

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/pbx/threecx/threecxtest"
	"github.com/voipbridge/voipbridge/pbx/xelion/xeliontest"
	"github.com/voipbridge/voipbridge/robin/robintest"
	"github.com/voipbridge/voipbridge/route/routetest"
	"github.com/voipbridge/voipbridge/sip/siptest"
)

// onlineWorld is everything check --online can log in to, faked on
// loopback: ROBIN (register-event, presence and conversations on one
// listener), a SIP PBX, 3CX, Xelion, Chatwoot and a shop.
type onlineWorld struct {
	robin    *robintest.Server
	convs    *routetest.Robin
	pbx      *siptest.PBX
	threecx  *threecxtest.Server
	xelion   *xeliontest.Server
	chatwoot *routetest.Chatwoot
	shop     *routetest.Shop
	env      []string
}

// The secrets of the fakes, which no output may show.
var onlineSecrets = []string{"test-key", "robin-secret", "sip-password", "threecx-secret", "xelion-password", "cw-token"}

func newOnlineWorld(t *testing.T) *onlineWorld {
	t.Helper()
	w := &onlineWorld{
		robin:    robintest.NewServer(robintest.Options{APIKey: "test-key", APISecret: "robin-secret", RequireBasic: true}),
		pbx:      siptest.Start(t, siptest.Options{Username: "voipbridge", Password: "sip-password"}),
		threecx:  threecxtest.New(threecxtest.Options{ClientID: "bridge", ClientSecret: "threecx-secret"}),
		xelion:   xeliontest.Start(t, xeliontest.Options{Username: "admin", Password: "xelion-password"}),
		chatwoot: routetest.NewChatwoot(3, "cw-token"),
		shop:     routetest.NewShop(),
	}
	t.Cleanup(w.robin.Close)
	t.Cleanup(w.threecx.Close)
	w.convs = routetest.NewRobin("test-key", "robin-secret")
	w.convs.Next = w.robin
	robinURL := routetest.Start(t, w.convs)
	w.threecx.SetDN("201", "Extension")
	w.env = []string{
		"DATA_DIR=" + t.TempDir(), "WEBHOOK_TOKEN=tok", "EXTENSIONS=201,202",
		"ROBIN_API_URL=" + robinURL, "ROBIN_PRESENCE_URL=" + robinURL + "/api/v1",
		"ROBIN_API_KEY=test-key", "ROBIN_API_SECRET=robin-secret",
		"SIP_SERVER=" + w.pbx.Addr(), "SIP_DOMAIN=" + w.pbx.Domain(), "SIP_LISTEN=127.0.0.1:0", "SIP_PASSWORD=sip-password",
		"THREECX_URL=" + w.threecx.StartHTTP(), "THREECX_CLIENT_ID=bridge", "THREECX_CLIENT_SECRET=threecx-secret",
		"XELION_URL=" + w.xelion.URL, "XELION_USERNAME=admin", "XELION_PASSWORD=xelion-password",
		"CHATWOOT_URL=" + routetest.Start(t, w.chatwoot), "CHATWOOT_ACCOUNT_ID=3", "CHATWOOT_API_TOKEN=cw-token",
		"CUSTOMER_LOOKUP_URL=" + routetest.Template(routetest.Start(t, w.shop)),
	}
	return w
}

func (w *onlineWorld) check(t *testing.T, env ...string) []OnlineCheck {
	t.Helper()
	cfg, err := LoadConfig(append(append([]string(nil), w.env...), env...))
	if err != nil {
		t.Fatal(err)
	}
	checks := CheckOnline(t.Context(), cfg, CheckOptions{Timeout: 5 * time.Second})
	for _, c := range checks {
		for _, s := range onlineSecrets {
			if strings.Contains(c.String(), s) {
				t.Errorf("a check shows the secret %q: %s", s, c)
			}
		}
	}
	return checks
}

// report is the checks as check --online prints them, one line each.
func report(checks []OnlineCheck) string {
	var b strings.Builder
	for _, c := range checks {
		b.WriteString(c.String() + "\n")
	}
	return b.String()
}

// TestCheckOnline: with everything right, every configured service is
// logged in to and each says ok; ROBIN's requests went through the quota
// record in the journal; the check leaves no subscription and no session
// behind.
func TestCheckOnline(t *testing.T) {
	w := newOnlineWorld(t)
	checks := w.check(t)
	var names []string
	for _, c := range checks {
		names = append(names, c.Name)
		if !c.OK {
			t.Errorf("check failed: %s", c)
		}
	}
	if diff := cmp.Diff([]string{"journal", "robin", "robin", "sip", "3cx", "xelion", "chatwoot", "shop"}, names); diff != "" {
		t.Fatalf("checks (-want +got):\n%s\n%s", diff, report(checks))
	}
	for _, want := range []string{
		"count in the quota record the bridge keeps there",
		"API key accepted: presence answered Offline for channel Chat",
		"API key and secret accepted: conversations answered 200 OK",
		"SUBSCRIBE (dialog) for 201 to " + w.pbx.Addr() + " accepted",
		"token issued for client id bridge; the Call Control API lists 1 DNs",
		"logged in as admin",
		"contact search in account 3 answered",
		"no customer with the test number " + CheckNumber,
	} {
		if !strings.Contains(report(checks), want) {
			t.Errorf("the report does not say %q:\n%s", want, report(checks))
		}
	}
	// ROBIN saw the two requests, and the journal's quota record counts
	// them, so a bridge started now still keeps the limits.
	if n := len(w.robin.Requests()) + w.convs.Requests("conversations"); n != 2 {
		t.Errorf("ROBIN got %d requests, want 2", n)
	}
	if used := recordedRequests(t, w.env); used != 2 {
		t.Errorf("the quota record holds %d requests, want 2", used)
	}
	// The subscription was a real one, authenticated, and ended.
	var unsubscribed bool
	for _, s := range w.pbx.Subscribes() {
		if s.Ext == "201" && s.Authorized && s.Expires == 0 {
			unsubscribed = true
		}
		if s.Ext != "201" {
			t.Errorf("SUBSCRIBE for %s: the check subscribes the first extension only", s.Ext)
		}
	}
	if !unsubscribed {
		t.Errorf("no authorized unsubscribe for 201: %+v", w.pbx.Subscribes())
	}
	if st := w.xelion.Stats(); st.Logins != 1 || st.Logouts != 1 {
		t.Errorf("xelion: %d logins, %d logouts; want one of each", st.Logins, st.Logouts)
	}
}

// TestCheckOnlineWrongCredentials: every wrong key, secret, password and
// token is found, each check says which settings to look at, and none
// prints one.
func TestCheckOnlineWrongCredentials(t *testing.T) {
	w := newOnlineWorld(t)
	w.shop.SetStatus(http.StatusInternalServerError)
	checks := w.check(t,
		"ROBIN_API_KEY=wrong-key", "SIP_PASSWORD=wrong-password", "THREECX_CLIENT_SECRET=wrong-secret",
		"XELION_PASSWORD=wrong-password", "CHATWOOT_API_TOKEN=wrong-token")
	var failed []string
	for _, c := range checks {
		if !c.OK {
			failed = append(failed, c.Name)
		}
	}
	if diff := cmp.Diff([]string{"robin", "robin", "sip", "3cx", "xelion", "chatwoot", "shop"}, failed); diff != "" {
		t.Errorf("failed checks (-want +got):\n%s\n%s", diff, report(checks))
	}
	for _, want := range []string{
		"presence answered 404 Not Found: is ROBIN_API_KEY right (and ROBIN_PRESENCE_URL)?",
		"conversations answered 401 Unauthorized",
		"SUBSCRIBE (dialog) for 201 to " + w.pbx.Addr() + ": status 401: are SIP_USERNAME and SIP_PASSWORD right?",
		"token: status 400 (invalid_client): are THREECX_CLIENT_ID and THREECX_CLIENT_SECRET right?",
		"login: status 401 (xelion code 10004): are XELION_USERNAME, XELION_PASSWORD and XELION_TENANT right?",
		"Invalid Access Token",
		"is CHATWOOT_API_TOKEN right, and a user's access token (an agent bot's may not search contacts)?",
		"FAILED  shop      customer lookup: status 500",
	} {
		if !strings.Contains(report(checks), want) {
			t.Errorf("the report does not say %q:\n%s", want, report(checks))
		}
	}
	for _, s := range []string{"wrong-key", "wrong-password", "wrong-secret", "wrong-token"} {
		if strings.Contains(report(checks), s) {
			t.Errorf("the report shows %q:\n%s", s, report(checks))
		}
	}
}

// TestCheckOnlineBesideARunningBridge: a bridge holding the embedded
// journal does not stop the check; the report says the requests are not in
// that bridge's quota record.
func TestCheckOnlineBesideARunningBridge(t *testing.T) {
	w := newOnlineWorld(t)
	cfg, err := LoadConfig(w.env)
	if err != nil {
		t.Fatal(err)
	}
	j, err := events.OpenJournal(t.Context(), journalOptions(cfg, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	checks := w.check(t, "SIP_SERVER=", "SIP_DOMAIN=", "SIP_PASSWORD=", "THREECX_URL=", "THREECX_CLIENT_ID=", "THREECX_CLIENT_SECRET=",
		"XELION_URL=", "XELION_USERNAME=", "XELION_PASSWORD=", "CHATWOOT_URL=", "CUSTOMER_LOOKUP_URL=")
	if len(checks) != 3 || !checks[0].OK || !strings.Contains(checks[0].Detail, "is in use by a running bridge") || !checks[1].OK || !checks[2].OK {
		t.Errorf("report:\n%s", report(checks))
	}
}

// recordedRequests is how many requests the journal's quota record holds
// in its longest window.
func recordedRequests(t *testing.T, env []string) int {
	t.Helper()
	cfg, err := LoadConfig(env)
	if err != nil {
		t.Fatal(err)
	}
	h, err := OpenHelpdesk(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	used := 0
	for _, u := range h.quota.Usage() {
		if u.Window.Per == 24*time.Hour {
			used = u.Used
		}
	}
	return used
}
