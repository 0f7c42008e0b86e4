package webhook

import (
	"encoding/xml"
	"net/url"
	"os"
	"strings"
	"testing"
)

// crmTemplate is the part of a 3CX CRM template the bridge depends on.
type crmTemplate struct {
	Scenarios []struct {
		ID      string `xml:"Id,attr"`
		Request struct {
			URL         string `xml:"Url,attr"`
			RequestType string `xml:"RequestType,attr"`
			Encoding    string `xml:"RequestEncoding,attr"`
			Headers     []struct {
				Key   string `xml:"Key,attr"`
				Value string `xml:",chardata"`
			} `xml:"Headers>Value"`
			PostValues []struct {
				Key string `xml:"Key,attr"`
			} `xml:"PostValues>Value"`
		} `xml:"Request"`
	} `xml:"Scenarios>Scenario"`
}

// TestCRMTemplateMatchesProfile: the template a 3CX admin uploads
// (contrib/3cx-crm/voipbridge.xml) sends what the 3cx-crm profile reads.
// Each scenario's request is rebuilt with sample values for the 3CX
// variables and sent to the profile's handler.
func TestCRMTemplateMatchesProfile(t *testing.T) {
	b, err := os.ReadFile("../../contrib/3cx-crm/voipbridge.xml")
	if err != nil {
		t.Fatal(err)
	}
	var tpl crmTemplate
	if err := xml.Unmarshal(b, &tpl); err != nil {
		t.Fatal(err)
	}
	if len(tpl.Scenarios) != 3 {
		t.Fatalf("%d scenarios, want lookup and two reports", len(tpl.Scenarios))
	}
	sample := map[string]string{
		"CallStartTimeUTC": "2026-11-21T10:00:01Z", "CallEstablishedTimeUTC": "2026-11-21T10:00:09Z",
		"CallEndTimeUTC": "2026-11-21T10:02:22Z", "Number": "0612345678", "Agent": "201",
		"QueueExtension": "800", "Duration": "00:02:13",
	}
	j := &recJournal{}
	mux := profileMux(builtinProfile(t, "3cx-crm"), j, nil)
	for _, sc := range tpl.Scenarios {
		r := sc.Request
		auth := ""
		for _, h := range r.Headers {
			if h.Key == "Authorization" {
				auth = strings.ReplaceAll(h.Value, "[Token]", "s3cret")
			}
		}
		if auth != "Bearer s3cret" {
			t.Fatalf("scenario %q: Authorization %q", sc.ID, auth)
		}
		target := strings.NewReplacer("[BridgeUrl]", "", "[Number]", sample["Number"]).Replace(r.URL)
		switch sc.ID {
		case "":
			if r.RequestType != "Get" {
				t.Fatalf("lookup is %s", r.RequestType)
			}
			w := do(mux, "GET", target, "", auth, "")
			if w.Code != 200 || w.Body.String() != "{\"contacts\":[]}\n" {
				t.Fatalf("lookup: %d %s", w.Code, w.Body)
			}
		default:
			if r.RequestType != "Post" || r.Encoding != "UrlEncoded" {
				t.Fatalf("scenario %s: %s %s", sc.ID, r.RequestType, r.Encoding)
			}
			for _, callType := range []string{"Inbound", "Missed"} {
				form := url.Values{"CallType": {callType}}
				for _, v := range r.PostValues {
					if v.Key != "CallType" {
						form.Set(v.Key, sample[v.Key])
					}
				}
				w := do(mux, "POST", target, "application/x-www-form-urlencoded", auth, form.Encode())
				if w.Code != 202 {
					t.Fatalf("scenario %s, %s: %d %s", sc.ID, callType, w.Code, w.Body)
				}
			}
		}
	}
	states := map[string]int{}
	for _, s := range j.sigs {
		states[string(s.State)]++
	}
	// Lookup: ringing. Each report scenario, Inbound: answered (when it
	// sends the established time) and ended; Missed: ringing and ended.
	want := map[string]int{"ringing": 3, "answered": 1, "ended": 4}
	for k, n := range want {
		if states[k] != n {
			t.Fatalf("journaled %v, want %v", states, want)
		}
	}
}
