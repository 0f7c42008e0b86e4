package bridge

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestBoardCost measures what the board costs: the CPU of the test process
// (the bridge, the fake ROBIN, the webhook client posting the calls and the
// boards' readers) while 200 calls are in progress and one changes every
// 200ms (alternately: the oldest ends and a new one is answered; a call is
// transferred), for 10s each with 0, 1 and 10 boards open. It logs CPU time
// over wall time, what each board receives a second and what it receives
// when it opens. It asserts nothing about the figures; it takes about 40s,
// so only with VOIPBRIDGE_LONG_TESTS=1:
//
//	VOIPBRIDGE_LONG_TESTS=1 go test ./bridge/ -run TestBoardCost -v
func TestBoardCost(t *testing.T) {
	if os.Getenv("VOIPBRIDGE_LONG_TESTS") == "" {
		t.Skip("takes about 40s; set VOIPBRIDGE_LONG_TESTS=1")
	}
	for _, boards := range []int{0, 1, 10} {
		t.Run(fmt.Sprintf("boards=%d", boards), func(t *testing.T) { measureBoard(t, boards) })
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func measureBoard(t *testing.T, boards int) {
	const live, changes = 200, 50
	tb := startBridge(t, "BOARD_ALLOW_CIDRS=127.0.0.0/8")
	from := func(i int) string { return fmt.Sprintf("+31 20 555 %04d", i%10000) }
	call := func(i int, event, ext string) string {
		return generic(fmt.Sprint("c", i), event, ext, "from", from(i))
	}
	post := func(body string) {
		if st := tb.Post(t, "/v1/webhooks/generic", body); st != http.StatusAccepted {
			t.Fatalf("POST %s: %d", body, st)
		}
	}
	next := 0
	for ; next < live; next++ {
		post(call(next, "answered", fmt.Sprint(200+next%50)))
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for {
		calls, changed := tb.tracker.Live()
		if len(calls) == live {
			break
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("%d calls in progress, want %d", len(calls), live)
		}
	}

	var received, first atomic.Int64
	for range boards {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tb.URL+"/v1/board/stream", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		// What a browser gets when it opens: everything up to the first
		// calls part.
		buf := make([]byte, 256<<10)
		var got strings.Builder
		for !strings.Contains(got.String(), "event: calls\ndata: ") || !strings.HasSuffix(got.String(), "\n\n") {
			n, err := resp.Body.Read(buf)
			got.Write(buf[:n])
			if err != nil {
				t.Fatal(err)
			}
		}
		first.Add(int64(got.Len()))
		go func() {
			defer resp.Body.Close()
			for {
				n, err := resp.Body.Read(buf)
				received.Add(int64(n))
				if err != nil {
					return
				}
			}
		}()
	}

	oldest := 0
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	start, cpu0 := time.Now(), cpuTime()
	for i := range changes {
		<-tick.C // the pace of the calls being measured
		if i%2 == 0 {
			post(call(oldest, "ended", ""))
			oldest++
			post(call(next, "answered", fmt.Sprint(200+next%50)))
			next++
		} else {
			c := oldest + (i*37)%(next-oldest)
			post(call(c, "transferred", fmt.Sprint(300+i%50)))
		}
	}
	wall, cpu := time.Since(start), cpuTime()-cpu0
	line := fmt.Sprintf("%d boards, %d calls in progress, %d changes in %s: CPU %.1f%% of one core", boards, live, changes, wall.Round(time.Millisecond), 100*cpu.Seconds()/wall.Seconds())
	if boards > 0 {
		line += fmt.Sprintf("; each board receives %.0f B/s, and %d B when it opens", float64(received.Load())/float64(boards)/wall.Seconds(), first.Load()/int64(boards))
	}
	t.Log(line)
}
