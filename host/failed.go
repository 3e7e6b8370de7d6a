package host

import "time"

// FailedRequest is what a pipeline's owners are shown of one of its failed requests
// (web's GET /v1/pipelines/{id}/logs, cocoon logs): when it failed, what its client
// was told, and what the modules logged. Nothing of the request or its answer is in it
// but what a module chose to log.
type FailedRequest struct {
	Time    time.Time `json:"time"`
	Status  int       `json:"status"`
	Code    string    `json:"code"`
	Message string    `json:"message"`
	// Logs are the request's log records, oldest first; the server may keep only the
	// last ones.
	Logs []LogRecord `json:"logs"`
	// Dropped counts the earliest records left out of Logs, and Truncated the messages
	// the server cut short.
	Dropped   int `json:"dropped_records,omitempty"`
	Truncated int `json:"truncated_records,omitempty"`
}
