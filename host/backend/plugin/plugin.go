package plugin

import (
	"context"
	"errors"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/cocoonhost/cocoon/host/backend"
	"github.com/cocoonhost/cocoon/host/backend/plugin/pb"
)

// Handshake is what the host and a plugin must agree on before they talk: go-plugin's
// protocol version of the contract (1 for cocoon.backend.v1) and the environment
// variable that marks a process as started by the host. It is not a security measure:
// AutoMTLS is.
var Handshake = goplugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "COCOON_BACKEND_PLUGIN",
	MagicCookieValue: "6f3c1f6e-backend-v1",
}

// pluginName is the one plugin a backend program serves.
const pluginName = "backend"

// maxMessageBytes bounds one gRPC message either way. A request carries the pre stage's
// output twice (decoded messages and Raw), and that output may reach 16 MiB
// (abi.CeilingLimits.OutputBytes); gRPC's default of 4 MiB would refuse it.
const maxMessageBytes = 40 << 20

// grpcPlugin joins the generated gRPC code to go-plugin: it registers a server for b on
// the plugin side and makes a client on the host side.
type grpcPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	b   backend.Backend // nil on the host side
	log hclog.Logger    // nil on the host side
}

func (p *grpcPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterBackendServer(s, &server{b: p.b, log: p.log})
	return nil
}

// GRPCClient returns a conn. go-plugin cancels ctx when the plugin process exits, which
// is how calls in flight learn about it without waiting for the transport to notice.
func (p *grpcPlugin) GRPCClient(ctx context.Context, _ *goplugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &conn{rpc: pb.NewBackendClient(c), exited: ctx}, nil
}

// conn is the host's end of one plugin process.
type conn struct {
	rpc    pb.BackendClient
	exited context.Context // done when the process has exited
}

// errorToPB turns a backend's error into the contract's Error. An error that is not a
// *backend.Error may hold anything, so the client gets a generic message and the plugin
// logs the detail (log is called only then).
func errorToPB(err error, log func(msg string, args ...any)) *pb.Error {
	var be *backend.Error
	switch {
	case errors.As(err, &be):
		return &pb.Error{Code: codeToPB[be.Code], Message: be.Message, HttpStatus: int32(be.Status)}
	case errors.Is(err, context.DeadlineExceeded):
		return &pb.Error{Code: pb.ErrorCode_ERROR_CODE_TIMEOUT, Message: "the backend timed out"}
	default:
		log("backend failed", "error", err)
		return &pb.Error{Code: pb.ErrorCode_ERROR_CODE_UPSTREAM, Message: "the backend failed"}
	}
}

// errorFromPB turns the contract's Error into a *backend.Error; a code this host does
// not know reads as CodeUpstream.
func errorFromPB(e *pb.Error) *backend.Error {
	code, ok := codeFromPB[e.GetCode()]
	if !ok {
		code = backend.CodeUpstream
	}
	err := backend.Errorf(code, "%s", e.GetMessage())
	if s := e.GetHttpStatus(); s >= 400 && s <= 599 {
		err.Status = int(s)
	}
	return err
}

var codeToPB = map[backend.Code]pb.ErrorCode{
	backend.CodeInvalidRequest: pb.ErrorCode_ERROR_CODE_INVALID_REQUEST,
	backend.CodeUnavailable:    pb.ErrorCode_ERROR_CODE_UNAVAILABLE,
	backend.CodeTimeout:        pb.ErrorCode_ERROR_CODE_TIMEOUT,
	backend.CodeUpstream:       pb.ErrorCode_ERROR_CODE_UPSTREAM,
}

var codeFromPB = func() map[pb.ErrorCode]backend.Code {
	m := make(map[pb.ErrorCode]backend.Code, len(codeToPB))
	for c, p := range codeToPB {
		m[p] = c
	}
	return m
}()

func requestToPB(r *backend.Request) *pb.GenerateRequest {
	msgs := make([]*pb.Message, len(r.Messages))
	for i, m := range r.Messages {
		msgs[i] = &pb.Message{Role: m.Role, Content: m.Content}
	}
	return &pb.GenerateRequest{
		Model:       r.Model,
		Messages:    msgs,
		MaxTokens:   int32(min(max(r.MaxTokens, 0), 1<<31-1)),
		Temperature: r.Temperature,
		TopP:        r.TopP,
		Seed:        r.Seed,
		Stop:        r.Stop,
		Raw:         r.Raw,
	}
}

func requestFromPB(r *pb.GenerateRequest) *backend.Request {
	msgs := make([]backend.Message, len(r.GetMessages()))
	for i, m := range r.GetMessages() {
		msgs[i] = backend.Message{Role: m.GetRole(), Content: m.GetContent()}
	}
	return &backend.Request{
		Model:       r.GetModel(),
		Messages:    msgs,
		MaxTokens:   int(r.GetMaxTokens()),
		Temperature: r.Temperature,
		TopP:        r.TopP,
		Seed:        r.Seed,
		Stop:        r.GetStop(),
		Raw:         r.GetRaw(),
	}
}

func resultToPB(r backend.Result) *pb.Final {
	return &pb.Final{
		FinishReason: r.FinishReason,
		Usage:        &pb.Usage{PromptTokens: int64(r.Usage.PromptTokens), CompletionTokens: int64(r.Usage.CompletionTokens)},
		Model:        r.Model,
	}
}

func resultFromPB(f *pb.Final) backend.Result {
	return backend.Result{
		FinishReason: f.GetFinishReason(),
		Usage: backend.Usage{
			PromptTokens:     int(f.GetUsage().GetPromptTokens()),
			CompletionTokens: int(f.GetUsage().GetCompletionTokens()),
		},
		Model: f.GetModel(),
	}
}

func modelsToPB(ms []backend.Model) []*pb.Model {
	out := make([]*pb.Model, len(ms))
	for i, m := range ms {
		out[i] = &pb.Model{Id: m.ID, OwnedBy: m.OwnedBy, ContextLength: int64(m.ContextLength)}
	}
	return out
}

func modelsFromPB(ms []*pb.Model) []backend.Model {
	out := make([]backend.Model, len(ms))
	for i, m := range ms {
		out[i] = backend.Model{ID: m.GetId(), OwnedBy: m.GetOwnedBy(), ContextLength: int(m.GetContextLength())}
	}
	return out
}
