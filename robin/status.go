package robin

// StatusCode returns the HTTP status the helpdesk answered (0 when none), for
// callers that classify errors without importing this package.
func (e *Error) StatusCode() int { return e.Status }

// ResponseBody returns the start of the helpdesk's answer, redacted.
func (e *Error) ResponseBody() string { return e.Body }
