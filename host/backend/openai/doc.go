// Package openai is a backend.Backend for inference servers that speak the OpenAI wire
// format: vLLM, SGLang, llama.cpp's server and Ollama (its /v1 endpoints).
//
// Generate posts to {base}/chat/completions and reads the answer as server-sent events.
// The body is the request JSON of the pipeline (backend.Request.Raw), so fields the host
// does not interpret (repetition_penalty, logit_bias, ...) reach the server, with these
// changes: the typed fields of backend.Request (model, messages, max_tokens, temperature,
// top_p, seed, stop) replace their members, and remove them when unset;
// max_completion_tokens and n are removed (one answer per request); "stream": true and
// "stream_options": {"include_usage": true} are forced, other stream options kept.
// Messages carry text only: structured content in Raw is replaced by the typed text.
//
// Streams are parsed as the HTML standard says (data fields with or without the space,
// multi-line data, comments and keep-alives, event/id/retry fields, LF or CRLF line
// ends, lines of any length up to WithMaxLineSize) up to "data: [DONE]", or to the end
// of the body after a finish reason. Deltas are the content of choice 0; reasoning and
// tool-call deltas are ignored. A character a server splits between chunks, as raw
// UTF-8 bytes or as the two halves of a \u surrogate pair, is held back until it is
// whole, so every delta is valid UTF-8.
//
// Usage is the server's, from its usage chunk (vLLM, SGLang and Ollama send it last,
// with no choices; llama.cpp with the finish reason). Servers that ignore
// stream_options (Ollama before 0.5) send none; usage is then counted locally:
// completion tokens are the non-empty content deltas received, exact for servers that
// send a chunk per token (all four do by default) and low for one that batches tokens;
// prompt tokens are estimated as one per 4 bytes of message text, which ignores the
// chat template and is only as good as that ratio is for the model's tokenizer.
//
// Errors are *backend.Error, from a status other than 200 or from an error frame in the
// stream ("data: {error...}", "event: error", or llama.cpp's "error:" field), in both
// shapes servers use: {"error":{"message",...}} and vLLM's {"object":"error",...}. HTTP
// 400, 404, 413 and 422 map to CodeInvalidRequest, 429 and 503 to CodeUnavailable, 408,
// 504 and the timeouts below to CodeTimeout, the rest to CodeUpstream; an unreachable
// server is CodeUnavailable. The message is the server's own, cut to 512 bytes, with
// control characters removed and the API key and the server's address redacted; when
// there is none (a proxy's HTML page), the status. Transport errors are named by kind
// ("connection refused") only, since their text holds the server's address.
//
// Timeouts: the first byte of the response body must come within the first-byte
// timeout (connecting, queueing and prompt processing), then the body must never be
// silent longer than the idle timeout; both default to 60 s. There is no total
// timeout, so an answer may take as long as it keeps streaming. Cancelling the context
// of Generate, an error from emit, a timeout and Close all close the connection, which
// is how the servers learn to stop generating.
//
// Tests replay transcripts in testdata, written by hand after the output of each server
// (vLLM's role chunk and usage-only final chunk, SGLang's explicit nulls and
// matched_stop, llama.cpp's timings and "error:" field, Ollama's "fp_ollama"), whole,
// in random byte splits and with CRLF line ends. They are not recordings of live
// servers.
//
// Chunks in the shape servers stream (plain lower-case member names, each once; model,
// object and finish_reason without escapes; integer counts; valid UTF-8) are decoded
// with the host's JSON scanner (jsonscan.Decoder), which checks the whole event in one
// pass, and reuse the last chunk's memory; anything else, error objects included, by
// encoding/json (FuzzDecodeChunk holds the two to the same result). A chunk whose bytes
// around its content string are those of the last such chunk (a server's tokens after
// the first) is decoded by comparing them and scanning the string alone
// (FuzzDecodeFramedChunk holds it to a decoding from scratch).
//
// A caller that passes an idle hook (backend.WithIdle) has it called before every
// read of the body, and after the last delta unless the body has ended by then:
// whatever was emitted before a wait for the server can go out then, in one write,
// rather than one write per token.
//
// Costs: parsing takes 140-300 ns per streamed token and no allocation (deltas are cut
// from 4 KiB blocks of text) (BenchmarkStream/parse, on the 2-core development machine
// under load: `go test -run '^$' -bench 'BenchmarkStream/parse' -benchtime 300x
// -benchmem ./host/backend/openai/`; it was a few microseconds and 14 allocations with
// encoding/json), small next to the milliseconds a GPU takes per token. Each stream
// holds a 64 KiB read buffer, from a pool, and as much as its longest line; the
// Backend's own transport reads 64 KiB at a time. With an idle hook the watchdog is
// paused between reads of the body rather than around each emit, which saves a clock
// reading per token.
package openai
