package route

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// PhonePlaceholder is replaced in CUSTOMER_LOOKUP_URL by the caller's number
// in E.164, query-escaped (%2B31612345678).
const PhonePlaceholder = "{phone}"

// Customers asks the shop's customer endpoint, the one ROBIN's dynamic
// integration calls ("Customer information"), for a caller's e-mail address.
type Customers struct {
	template string
	hc       *http.Client
	count    func(status string)
}

// NewCustomers checks the CUSTOMER_LOOKUP_URL template: an absolute http(s)
// URL containing {phone}. User information in the URL is sent as HTTP
// Basic credentials. count, when set, is told the outcome of every request
// ("2xx", "4xx", "5xx", "error").
func NewCustomers(template string, hc *http.Client, count func(status string)) (*Customers, error) {
	if err := CheckCustomerURL(template); err != nil {
		return nil, err
	}
	if hc == nil {
		hc = &http.Client{}
	}
	if count == nil {
		count = func(string) {}
	}
	return &Customers{template: template, hc: hc, count: count}, nil
}

// CheckCustomerURL reports what is wrong with a CUSTOMER_LOOKUP_URL; its
// errors never repeat the URL, which may hold credentials.
func CheckCustomerURL(template string) error {
	if !strings.Contains(template, PhonePlaceholder) {
		return errors.New("CUSTOMER_LOOKUP_URL: no " + PhonePlaceholder + " in the template")
	}
	u, err := url.Parse(strings.ReplaceAll(template, PhonePlaceholder, "x"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("CUSTOMER_LOOKUP_URL: want an absolute http(s) URL")
	}
	return nil
}

// customer is the documented answer of the customer endpoint.
type customer struct {
	Email string `json:"email_address"`
	Phone string `json:"phone_number"`
}

// Email returns the e-mail address of the customer with this number
// (E.164). The documented answer is one customer object; a list of them,
// or {"customers":[…]} as shop search endpoints answer, is read too, and
// the first customer with an address wins. A 404 or an answer without an
// address is ErrNoMatch.
func (c *Customers) Email(ctx context.Context, caller string) (string, error) {
	const op = "customer lookup"
	req, err := newRequest(ctx, strings.ReplaceAll(c.template, PhonePlaceholder, url.QueryEscape(caller)), op)
	if err != nil {
		return "", err
	}
	var raw json.RawMessage
	err = getJSON(c.hc, req, op, &raw)
	c.count(statusOf(err))
	var he *HTTPError
	if errors.As(err, &he) && he.Status == http.StatusNotFound {
		return "", none("the shop knows no customer with this number")
	}
	if err != nil {
		return "", err
	}
	for _, cu := range customersOf(raw) {
		if e := strings.TrimSpace(cu.Email); e != "" {
			return e, nil
		}
	}
	return "", none("the shop knows no customer with this number")
}

// customersOf reads an object, a list, or {"customers": list}.
func customersOf(raw json.RawMessage) []customer {
	raw = bytes.TrimSpace(raw)
	var list []customer
	if len(raw) > 0 && raw[0] == '[' {
		_ = json.Unmarshal(raw, &list)
		return list
	}
	var one struct {
		customer
		Customers []customer `json:"customers"`
	}
	if json.Unmarshal(raw, &one) != nil {
		return nil
	}
	return append([]customer{one.customer}, one.Customers...)
}

// statusOf is the metric label of a request's outcome.
func statusOf(err error) string {
	var he *HTTPError
	switch {
	case err == nil:
		return "2xx"
	case errors.As(err, &he):
		return fmt.Sprintf("%dxx", he.Status/100)
	}
	return "error"
}
