package robin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

// OpMessage names the Channel API message in Error.Op.
const OpMessage = "channel message"

// ChannelMessage is one message of ROBIN's Channel API (a custom channel):
// POST {APIURL}/messages/. Messages with one ConversationExternalIdentifier
// land in one conversation.
type ChannelMessage struct {
	ChannelAccountExternalIdentifier string `json:"ChannelAccountExternalIdentifier"`
	ConversationExternalIdentifier   string `json:"ConversationExternalIdentifier"`
	MessageExternalIdentifier        string `json:"MessageExternalIdentifier"`
	RelationExternalIdentifier       string `json:"RelationExternalIdentifier"`
	RelationName                     string `json:"RelationName"`
	Content                          string `json:"Content"`
	IsPrivate                        bool   `json:"IsPrivate"`
	Subject                          string `json:"Subject,omitempty"`
	SentDateTime                     string `json:"SentDateTime,omitempty"`
	// Attachments is required by the schema; an empty list sends none.
	Attachments []ChannelAttachment `json:"Attachments"`
}

// ChannelAttachment is a file sent with a channel message.
type ChannelAttachment struct {
	FileName      string `json:"FileName"`
	Base64Content string `json:"Base64Content"`
}

// PostMessage sends a Channel API message (HTTP Basic key:secret). ROBIN
// answers 201; failures are *Error values with the usual classes.
func (c *Client) PostMessage(ctx context.Context, m ChannelMessage) error {
	if c.secret == "" {
		return &Error{Op: OpMessage, Status: http.StatusUnauthorized, Cause: errors.New("no API secret configured")}
	}
	if m.Attachments == nil {
		m.Attachments = []ChannelAttachment{}
	}
	body, err := json.Marshal(m)
	if err != nil {
		return &Error{Op: OpMessage, Cause: err}
	}
	reqCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	u := c.registerURL[:strings.LastIndex(c.registerURL, "/voip/registerevent/")] + "/messages/"
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return &Error{Op: OpMessage, Cause: &causeError{msg: c.Redact(err.Error()), err: errors.Unwrap(err)}}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	req.SetBasicAuth(c.key, c.secret)
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.transportError(ctx, reqCtx, OpMessage, err)
	}
	defer closeBody(resp.Body)
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return nil
	}
	return c.statusError(OpMessage, resp)
}
