package host

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/cocoonhost/cocoon/internal/strictjson"
)

// Generation describes what the backend produced: the fields of the response the host
// builds around the generated text, and the token counts a request is billed by.
type Generation struct {
	ID               string
	Created          int64
	Model            string
	FinishReason     string
	PromptTokens     int
	CompletionTokens int
}

// GenerateFunc runs the backend on the request JSON that came out of the pre stage,
// calling emit with each text delta in order. It must stop and return emit's error if
// emit fails (a post module failed, or the client went away).
type GenerateFunc func(ctx context.Context, request []byte, emit func(delta string) error) (Generation, error)

// Result is what one request produced, with the modules' logs and compute time.
type Result struct {
	// Request is the request JSON the backend got, after the pre stage.
	Request []byte
	// Response is the final chat.completion JSON of a non-streaming request.
	Response   []byte
	Generation Generation
	Logs       []LogRecord
	// ModuleTime is the wall time spent in module code (instantiation and calls), the
	// basis of module compute metering.
	ModuleTime time.Duration
}

// Run executes one request through the pipeline: the pre modules in order, then
// generate, then the post modules on the output. With stream nil the answer is a
// chat.completion in Result.Response; otherwise each delta, after the post modules'
// cocoon_chunk, goes to stream as it is produced, and what cocoon_end flushes goes last.
// If a post module has no stream hooks (Pipeline.Streamable is false) the whole answer
// goes through the post stage at the end and reaches stream as one delta.
//
// Errors are *Error for anything a module did (a rejection has CodeRejected), or
// generate's error. The Result is returned in both cases: its logs explain failures.
func (p *Pipeline) Run(ctx context.Context, request []byte, generate GenerateFunc, stream func(delta string) error) (*Result, error) {
	s := p.NewSession(ctx)
	defer s.Close()
	res := &Result{}
	err := s.run(res, request, generate, stream)
	res.Logs, res.ModuleTime = s.Logs(), s.request.moduleTime
	return res, err
}

func (s *Session) run(res *Result, request []byte, generate GenerateFunc, stream func(string) error) error {
	var err error
	if res.Request, err = s.Pre(request); err != nil {
		return err
	}
	live := stream != nil && s.p.Streamable()
	var content strings.Builder
	var emitErr error // the first failure of emit, whatever generate makes of it
	emit := func(delta string) error {
		if emitErr != nil {
			return emitErr
		}
		if !live {
			content.WriteString(delta)
			return nil
		}
		out, err := s.Chunk(delta)
		if err == nil && out != "" {
			err = stream(out)
		}
		emitErr = err
		return err
	}
	res.Generation, err = generate(s.ctx, res.Request, emit)
	if emitErr != nil {
		return emitErr
	}
	if err != nil {
		return err
	}
	if live {
		tail, err := s.End()
		if err == nil && tail != "" {
			err = stream(tail)
		}
		return err
	}
	response, err := s.Post(completion(res.Generation, content.String()))
	if err != nil {
		return err
	}
	if stream == nil {
		res.Response = response
		return nil
	}
	text, err := firstContent(response)
	if err == nil && text != "" {
		err = stream(text)
	}
	return err
}

// completion builds the chat.completion object the post stage gets (SPEC.md §5).
func completion(g Generation, content string) []byte {
	type message struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	type choice struct {
		Index        int     `json:"index"`
		Message      message `json:"message"`
		FinishReason string  `json:"finish_reason"`
	}
	type usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	}
	b, _ := json.Marshal(struct {
		ID      string   `json:"id"`
		Object  string   `json:"object"`
		Created int64    `json:"created"`
		Model   string   `json:"model"`
		Choices []choice `json:"choices"`
		Usage   usage    `json:"usage"`
	}{g.ID, "chat.completion", g.Created, g.Model,
		[]choice{{0, message{"assistant", content}, g.FinishReason}},
		usage{g.PromptTokens, g.CompletionTokens, g.PromptTokens + g.CompletionTokens}})
	return b
}

// firstContent returns the text of the first choice of a checked chat.completion.
func firstContent(response []byte) (string, error) {
	var r struct {
		Choices []struct {
			Message struct {
				Content *string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(response, &r); err != nil {
		return "", fmt.Errorf("post stage response: %w", strictjson.Problem(err))
	}
	if len(r.Choices) == 0 || r.Choices[0].Message.Content == nil {
		return "", nil
	}
	return *r.Choices[0].Message.Content, nil
}
