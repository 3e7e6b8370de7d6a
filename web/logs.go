package web

import (
	"container/list"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/cocoonhost/cocoon/host"
)

// Bounds of the failure logs. Worst case, every tracked pipeline full of failures that
// each kept the most: 128 × 16 × (8 KiB + 32 records of 88 bytes) ≈ 23 MiB.
const (
	// failurePipelines is how many pipelines have failures kept: those that failed
	// most recently.
	failurePipelines = 128
	// failuresPerPipeline is how many failed requests a pipeline keeps: the latest.
	failuresPerPipeline = 16
	// failureRecords and failureLogBytes bound the records kept of one failed request
	// and the bytes of their messages: the last ones, since a failure's cause (the
	// host's record of a trap, the module's last words) is logged last.
	failureRecords  = 32
	failureLogBytes = 8 << 10
	// recordBytes bounds one record's message.
	recordBytes = 2 << 10
)

// failedRequest is one failed request of a pipeline, with those who may read it: the
// pipeline's owners when it failed.
type failedRequest struct {
	host.FailedRequest
	owners []string
}

// failureLog keeps, in memory and within the bounds above, the module logs of each
// pipeline's recent failed requests, for its owners: module logs are the only way a
// pipeline's author learns why a module failed, and they must never reach the client.
// It is safe for concurrent use.
type failureLog struct {
	mu        sync.Mutex
	pipelines map[string]*list.Element // id -> *pipelineFailures in recent
	recent    list.List                // most recently failed first
}

// pipelineFailures is a ring of one pipeline's latest failed requests.
type pipelineFailures struct {
	id   string
	ring [failuresPerPipeline]failedRequest
	next int // where the next failure goes
	n    int // failures in ring
}

func newFailureLog() *failureLog {
	return &failureLog{pipelines: map[string]*list.Element{}}
}

// record keeps the logs of a request through pipeline e that failed with err, when a
// module failed: not when it was cancelled, nor when a module rejected it (a decision
// the client is told, not a failure). Cost: a copy of at most failureLogBytes of
// messages and one short lock; nothing for a request that did not fail.
func (l *failureLog) record(e *host.Entry, res *host.Result, err error) {
	var he *host.Error
	if e == nil || !errors.As(err, &he) || he.Module == "" || he.Code == host.CodeCancelled || he.Code == host.CodeRejected {
		return
	}
	f := failedRequest{host.FailedRequest{Time: time.Now().UTC(), Status: he.Status, Code: string(he.Code), Message: he.Error()}, e.Owners()}
	if res != nil {
		f.Logs, f.Dropped, f.Truncated = boundRecords(res.Logs)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.pipelines[e.ID]
	if ok {
		l.recent.MoveToFront(el)
	} else {
		if l.recent.Len() == failurePipelines {
			oldest := l.recent.Back()
			delete(l.pipelines, l.recent.Remove(oldest).(*pipelineFailures).id)
		}
		el = l.recent.PushFront(&pipelineFailures{id: e.ID})
		l.pipelines[e.ID] = el
	}
	p := el.Value.(*pipelineFailures)
	p.ring[p.next] = f
	p.next = (p.next + 1) % failuresPerPipeline
	p.n = min(p.n+1, failuresPerPipeline)
}

// read returns the failures of pipeline id that owner may read, oldest first.
func (l *failureLog) read(id, owner string) []host.FailedRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []host.FailedRequest{}
	el, ok := l.pipelines[id]
	if !ok {
		return out
	}
	p := el.Value.(*pipelineFailures)
	for i := range p.n {
		f := p.ring[(p.next-p.n+i+failuresPerPipeline)%failuresPerPipeline]
		if slices.Contains(f.owners, owner) {
			out = append(out, f.FailedRequest)
		}
	}
	return out
}

// boundRecords copies the last records that fit the bounds, each message cut to
// recordBytes. The copies share no memory with records, so that a kept prefix does not
// hold a module's whole log alive.
func boundRecords(records []host.LogRecord) (kept []host.LogRecord, dropped, truncated int) {
	budget, first := failureLogBytes, len(records)
	for first > 0 && len(records)-first < failureRecords {
		n := min(len(records[first-1].Message), recordBytes)
		if n > budget {
			break
		}
		budget -= n
		first--
	}
	kept = make([]host.LogRecord, len(records)-first)
	for i, r := range records[first:] {
		if len(r.Message) > recordBytes {
			r.Message = cutUTF8(r.Message, recordBytes)
			truncated++
		}
		r.Message = strings.Clone(r.Message) // see above
		kept[i] = r
	}
	return kept, first, truncated
}

// cutUTF8 is the longest prefix of s of at most n bytes that does not split a character.
func cutUTF8(s string, n int) string {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// logsJSON is the answer of GET /v1/pipelines/{id}/logs.
type logsJSON struct {
	Object   string               `json:"object"`
	Pipeline string               `json:"pipeline"`
	Data     []host.FailedRequest `json:"data"`
}

// pipelineLogs answers GET /v1/pipelines/{id}/logs to the pipeline's owners: the
// module logs of its recent failed requests, oldest first, of those that failed while
// the caller owned it (pipelines are shared by content, so a later owner does not read
// what failed before it joined). Others get 403; logs are never the end user's.
func (s *Server) pipelineLogs(w http.ResponseWriter, r *http.Request) {
	e, err := s.lookup(chi.URLParam(r, "id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	owner := principalOf(r.Context()).ID
	if !e.OwnedBy(owner) {
		s.writeError(w, r, errorf(http.StatusForbidden, typePermission, "not_owner",
			"only the owners of pipeline %s may read its logs", e.ID))
		return
	}
	writeJSON(w, http.StatusOK, logsJSON{Object: "list", Pipeline: e.ID, Data: s.failures.read(e.ID, owner)})
}
