package webhook

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// FuzzProfiles sends any body (as JSON, as a form, or as a query) to every
// built-in profile: the handler never panics, answers one of its documented
// statuses, journals nothing unless it accepted, and journals only signals
// that pass events.Signal.Validate (the recording journal checks).
func FuzzProfiles(f *testing.F) {
	files, _ := filepath.Glob("testdata/profiles/*/*.json")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err == nil {
			f.Add(uint8(0), b)
		}
	}
	f.Add(uint8(0), []byte(`{"Event":"incomingcall_started","Callerid":"05551239988","User":"202","Trtype":"Attended","Id":"230307114903_10-1"}`))
	f.Add(uint8(1), []byte(`{"event":"pickupincoming","callerid":"381629759787","user":"105","trtype":"NotDef","id":"250917190514_45-1","chid":"00000000-01dc-27f5"}`))
	f.Add(uint8(2), []byte("CallType=Inbound&Number=0612345678&Agent=201&CallStartTimeUTC=2026-11-21T10:00:01Z&CallEstablishedTimeUTC=[CallEstablishedTimeUTC]&CallEndTimeUTC=2026-11-21T10:02:22Z"))
	f.Add(uint8(5), []byte("event=lookup&Number=0612345678"))
	ps, err := BuiltinProfiles()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, how uint8, body []byte) {
		p := ps[int(how)%len(ps)]
		j := &recJournal{}
		mux := profileMux(p, j, nil)
		var code int
		switch how / 3 % 3 {
		case 0:
			code = do(mux, "POST", "/v1/webhooks/"+p.Source+"/s3cret", "application/json", "", string(body)).Code
		case 1:
			code = do(mux, "POST", "/v1/webhooks/"+p.Source+"/s3cret", "application/x-www-form-urlencoded", "", string(body)).Code
		default:
			r := "/v1/webhooks/" + p.Source + "/s3cret?" + string(body)
			defer func() {
				// httptest.NewRequest panics on a target that is not a
				// valid request line; that is the test's input, not the
				// handler's.
				if recover() != nil {
					code = http.StatusBadRequest
				}
			}()
			code = do(mux, "GET", r, "", "", "").Code
		}
		switch code {
		case http.StatusOK, http.StatusAccepted:
		case http.StatusBadRequest, http.StatusUnsupportedMediaType, http.StatusRequestEntityTooLarge:
			if len(j.sigs) != 0 {
				t.Fatalf("%d but %d signals journaled", code, len(j.sigs))
			}
		default:
			t.Fatalf("undocumented status %d", code)
		}
	})
}
