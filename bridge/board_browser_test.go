package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/voipbridge/voipbridge/robin/robintest"
)

// chromiumPath finds Debian's chromium. Without one the browser tests are
// skipped locally, and fail in CI (where CI is set), as the SIPp tests do.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed (Debian package chromium); CI must run the board's browser test")
	}
	t.Skip("chromium not installed (apt-get install chromium); set CI to make this a failure")
	return ""
}

// browser is a headless chromium driven by chromedp, with every console
// error and uncaught exception of its pages collected.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	problems []string
}

func newBrowser(t *testing.T, bin string, width, height int) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(width, height))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// Starts the browser, bound to ctx; the viewport is what a laptop shows.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(int64(width), int64(height))); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	br := &browser{t: t, ctx: ctx}
	console := chromedp.Console(ctx)
	go func() {
		for m, err := range console {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == chromedp.ConsoleError {
				br.mu.Lock()
				br.problems = append(br.problems, m.String())
				br.mu.Unlock()
			}
		}
	}()
	return br
}

// do runs actions within 30s; on a failure it saves a screenshot of the
// page beside the test's other files and fails the test.
func (br *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	br.t.Helper()
	ctx, cancel := context.WithTimeout(br.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		// Beside BOARD_SCREENSHOT, so that it outlives the test.
		if p := os.Getenv("BOARD_SCREENSHOT"); p != "" {
			if png, serr := chromedp.Run(br.ctx, chromedp.CaptureScreenshot()); serr == nil {
				shot := strings.TrimSuffix(p, ".png") + "-failure.png"
				_ = os.WriteFile(shot, png, 0o644)
				br.t.Logf("screenshot of the failure: %s", shot)
			}
		}
		if text, terr := chromedp.Run(br.ctx, chromedp.Evaluate[string](`document.body.innerText`)); terr == nil {
			br.t.Logf("the page says:\n%s", text)
		}
		br.mu.Lock()
		br.t.Logf("browser console: %q", br.problems)
		br.mu.Unlock()
		br.t.Fatalf("%s: %v", what, err)
	}
}

// until waits until the JavaScript expression is true on the page.
func (br *browser) until(what, expr string) {
	br.t.Helper()
	br.do(what, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(25*time.Second)))
}

func evalJS[T any](br *browser, expr string) T {
	br.t.Helper()
	ctx, cancel := context.WithTimeout(br.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		br.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// callState is a predicate: the board's row of call id is in state, with
// the given text in its agent cell and transfers count.
func callState(id, state, agent string, transfers int) string {
	return fmt.Sprintf(`(() => {
		const tr = document.querySelector('#calls-body tr[data-call=%q]');
		return !!tr && tr.querySelector('.state').textContent === %q &&
			tr.cells[3].textContent.includes(%q) && tr.cells[5].textContent === %q;
	})()`, id, state, agent, fmt.Sprint(transfers))
}

// eventState is a predicate: the board shows the event of call id and type
// in the delivery state (delivered, queued, dead).
func eventState(id, typ, state string) string {
	return fmt.Sprintf(`!!document.querySelector('#events-body tr[data-call=%q][data-type=%q] .d-%s')`, id, typ, state)
}

// TestBoardInBrowser drives the board in headless chromium: log in through
// the form, follow a call through ringing, answered, transferred and ended,
// see its events delivered, see an event the helpdesk rejects dead-lettered
// and replay it from the page with the keyboard, without a JavaScript error
// and without the calls' rows moving; a browser without EventSource polls.
// It saves a screenshot of the board
// (BOARD_SCREENSHOT names the file; the default is in the test's temporary
// directory) and logs what a page load costs.
func TestBoardInBrowser(t *testing.T) {
	const token = "board-test-admin-token-7f3a9c"
	bin := chromiumPath(t)
	// ROBIN's own limits, so the quota shows its four windows.
	tb := startBridge(t, "ADMIN_TOKEN="+token, "ROBIN_RATE_LIMITS=3/1s,180/1m,10000/1h,100000/24h")
	br := newBrowser(t, bin, 1440, 900)

	br.do("open the board", chromedp.Navigate(tb.URL+"/"), chromedp.WaitVisible(chromedp.ID("token")))
	br.do("type the token", chromedp.SendKeys(chromedp.ID("token"), token))
	lctx, cancel := context.WithTimeout(br.ctx, 30*time.Second)
	resp, err := chromedp.RunResponse(lctx, chromedp.Submit(chromedp.ID("token")))
	cancel()
	if err != nil || resp.Status != http.StatusOK {
		t.Fatalf("log in: %v %+v", err, resp)
	}
	br.until("the board, live", `document.querySelector('#conn.live') !== null && document.querySelectorAll('#quota .bar').length === 4`)
	// Layout shifts of the calls' rows, from here on.
	evalJS[chromedp.Void](br, `window.__shifts = []; new PerformanceObserver((l) => {
		for (const e of l.getEntries()) for (const s of e.sources || []) {
			const n = s.node && (s.node.closest ? s.node : s.node.parentElement);
			window.__shifts.push({value: e.value, where: n && n.closest ? (n.closest('#calls') ? 'calls' : n.closest('#events') ? 'events' : n.closest('.side') ? 'side' : n.nodeName) : '?'});
		}
	}).observe({type: 'layout-shift'}); undefined`)

	seen := evalJS[string](br, `JSON.stringify([location.href, document.cookie, ...performance.getEntriesByType('navigation').map((e) => e.name), ...performance.getEntriesByType('resource').map((e) => e.name)])`)
	if strings.Contains(seen, token) {
		t.Fatalf("the token is in a URL or a cookie script can read: %s", seen)
	}
	if want := fmt.Sprintf(`[%q,""`, tb.URL+"/"); !strings.HasPrefix(seen, want) {
		t.Fatalf("after the login: %s, want the board at / and no cookie visible to scripts", seen)
	}

	post := func(body string) {
		t.Helper()
		if st := tb.Post(t, "/v1/webhooks/generic", body); st != http.StatusAccepted {
			t.Fatalf("POST %s: %d", body, st)
		}
	}
	post(generic("b1", "ringing", "201"))
	br.until("the call ringing", callState("b1", "ringing", "—", 0))
	if caller := evalJS[string](br, `document.querySelector('#calls-body tr[data-call="b1"]').cells[0].textContent`); !strings.Contains(caller, "06 12345678") || !strings.Contains(caller, "+31612345678") {
		t.Fatalf("caller cell %q: want the number for reading and in E.164", caller)
	}
	post(generic("b1", "answered", "201"))
	br.until("the call answered by 201", callState("b1", "answered", "201", 0))
	post(generic("b1", "transferred", "203"))
	br.until("the call transferred to 203", callState("b1", "answered", "203", 1))
	post(generic("b1", "ended", ""))
	br.until("the call ended", callState("b1", "ended", "203", 1))
	for _, typ := range []string{"Answered", "Transfer", "Disconnected"} {
		br.until(typ+" delivered", eventState("b1", typ, "delivered"))
	}
	br.until("the ended call's row freed", `!document.querySelector('#calls-body tr[data-call="b1"]')`)

	// ROBIN rejects the next event: it is dead-lettered, and replayed from
	// the page.
	tb.Robin.SetFault(robintest.Fault{Status: 400, Body: `{"message":"Id is invalid"}`, Count: 1, Endpoint: robintest.EndpointRegisterEvent})
	post(generic("d1", "answered", "202", "from", "+31 20 123 4567"))
	br.until("the rejected event dead-lettered", eventState("d1", "Answered", "dead"))
	br.until("its replay button", `!!document.querySelector('#dead-list button[data-replay]')`)
	if why := evalJS[string](br, `document.querySelector('#dead-list li').textContent`); !strings.Contains(why, "400") || !strings.Contains(why, "Id is invalid") {
		t.Fatalf("dead letter %q: want ROBIN's status and answer", why)
	}
	br.do("replay with the keyboard", chromedp.Focus(chromedp.CSS(`#dead-list button[data-replay]`)), chromedp.KeyEvent("\r"))
	br.until("the replay confirmed", `document.querySelector('#action').textContent.includes('queued for delivery again')`)
	br.until("the replayed event delivered", eventState("d1", "Answered", "delivered"))
	br.until("no dead letter left", `document.querySelector('#dead-count').textContent === '0' && !document.querySelector('#dead-list li')`)
	var answered int
	for _, r := range tb.Robin.Events() {
		if r.Event.ID == "d1" && r.Event.Type == "Answered" {
			answered++
		}
	}
	if answered != 1 {
		t.Fatalf("ROBIN accepted d1's Answered %d times, want 1 (after the replay)", answered)
	}

	// A few calls in progress for the picture.
	for _, p := range []string{
		generic("s1", "answered", "201", "from", "+31 20 555 0143"),
		generic("s2", "ringing", "202", "from", "+32 2 555 01 77"),
		generic("s3", "answered", "204", "from", "+31 6 5555 0188"),
		generic("s3", "transferred", "205", "from", "+31 6 5555 0188"),
		`{"call_id":"s4","event":"answered","direction":"outbound","from":"+31858770023","to":"010 555 0199","extension":"206"}`,
	} {
		post(p)
	}
	br.until("the calls for the picture", `document.querySelectorAll('#calls-body tr[data-call]').length === 5 && document.querySelector('#calls-count').textContent === '5'`)
	br.until("their events delivered", eventState("s3", "Transfer", "delivered"))

	var shifts []struct {
		Value float64 `json:"value"`
		Where string  `json:"where"`
	}
	if err := json.Unmarshal([]byte(evalJS[string](br, `JSON.stringify(window.__shifts)`)), &shifts); err != nil {
		t.Fatal(err)
	}
	for _, s := range shifts {
		if s.Where == "calls" {
			t.Errorf("the calls' rows moved as calls came and went (layout shift %.4f)", s.Value)
		}
	}
	t.Logf("layout shifts elsewhere (the newest event goes on top of the events): %d", len(shifts))

	png, err := chromedp.Run(br.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	path := os.Getenv("BOARD_SCREENSHOT")
	if path == "" {
		path = filepath.Join(t.TempDir(), "board.png")
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the board: %s", path)

	// What a page load costs: the first (everything) and a reload (the
	// assets come from the cache).
	loadBytes := `(() => { let n = 0; for (const e of [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')]) n += e.transferSize; return n; })()`
	first := evalJS[int](br, loadBytes)
	br.do("reload", chromedp.Reload())
	br.until("the board after the reload", `document.querySelector('#conn.live') !== null && document.querySelectorAll('#calls-body tr[data-call]').length === 5`)
	t.Logf("page load: %d bytes the first time, %d on a reload (HTML, CSS, JS and icon; the stream's data comes on top)", first, evalJS[int](br, loadBytes))

	// A browser without EventSource (or behind a proxy that buffers the
	// stream) polls GET /v1/board instead.
	tab, closeTab := chromedp.NewContext(br.ctx)
	defer closeTab()
	pctx, cancelPoll := context.WithTimeout(tab, 30*time.Second)
	defer cancelPoll()
	if err := chromedp.Do(pctx,
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := cdp.Call(ctx, t, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: "delete window.EventSource"})
			return err
		}),
		chromedp.Navigate(tb.URL+"/"),
		chromedp.Poll[chromedp.Void](`document.querySelector('#conn.poll') !== null && document.querySelectorAll('#calls-body tr[data-call]').length === 5 && !!document.querySelector('#events-body .d-delivered')`,
			chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(25*time.Second)),
	); err != nil {
		t.Fatalf("the board by polling: %v", err)
	}

	br.mu.Lock()
	defer br.mu.Unlock()
	for _, p := range br.problems {
		t.Errorf("browser console: %s", p)
	}
}
