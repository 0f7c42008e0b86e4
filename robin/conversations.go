package robin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
)

// OpConversations names the conversation retrieval in Error.Op.
const OpConversations = "conversations"

// conversationsLimit bounds the answer read: one page of conversations with
// their messages.
const conversationsLimit = 4 << 20

// Conversation is one conversation of ROBIN's retrieval endpoint, with the
// fields routing reads; the others are ignored.
type Conversation struct {
	GUID          string `json:"guid"`
	State         string `json:"state"`
	StartDateTime string `json:"startDateTime"`
	// Owner is nil for a conversation nobody owns.
	Owner *ConversationOwner `json:"owner"`
}

// ConversationOwner is who owns a conversation.
type ConversationOwner struct {
	Type         string `json:"type"`
	Name         string `json:"name"`
	EmailAddress string `json:"emailAddress"`
}

// Conversations asks ROBIN for the conversations of the customer with this
// e-mail address (POST {APIURL}/conversations {"emailAddress": …}, HTTP
// Basic key:secret), one page as ROBIN orders it. Failures are *Error values;
// an answer that is not the documented JSON has ErrUnexpectedBody as cause.
func (c *Client) Conversations(ctx context.Context, email string) ([]Conversation, error) {
	if c.secret == "" {
		return nil, &Error{Op: OpConversations, Cause: errors.New("no API secret configured")}
	}
	body, _ := json.Marshal(map[string]string{"emailAddress": email})
	reqCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	// The register-event URL is the API base followed by this path and the
	// escaped key (which has no '/').
	u := c.registerURL[:strings.LastIndex(c.registerURL, "/voip/registerevent/")] + "/conversations"
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, &Error{Op: OpConversations, Cause: &causeError{msg: c.Redact(err.Error()), err: errors.Unwrap(err)}}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	req.SetBasicAuth(c.key, c.secret)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, reqCtx, OpConversations, err)
	}
	defer closeBody(resp.Body)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, c.statusError(OpConversations, resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, conversationsLimit))
	if err != nil {
		return nil, c.transportError(ctx, reqCtx, OpConversations, err)
	}
	var out struct {
		Conversations []Conversation `json:"conversations"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, &Error{Op: OpConversations, Status: resp.StatusCode, Body: truncateBody(c.Redact(string(b))), Cause: ErrUnexpectedBody}
	}
	return out.Conversations, nil
}
