package plugin

import (
	"context"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/cocoonhost/cocoon/host/backend"
	"github.com/cocoonhost/cocoon/host/backend/plugin/pb"
)

// Serve serves b to the host that started this process, and closes b when the host
// shuts the plugin down. Call it from main, after building the backend: the host waits
// (up to its start timeout) until Serve has started listening.
//
// Serve takes over the process's standard output and error: the handshake goes to
// standard output, and what the program later writes to either reaches the host's log.
// If the process was not started by a host (the handshake cookie is missing), Serve
// prints a notice and exits the process with status 1. If the host process dies without
// shutting the plugin down, Serve exits the process within about a second, so that no
// orphan keeps a model in memory.
func Serve(b backend.Backend) {
	// go-plugin's own log format: the host parses these JSON lines and keeps their
	// levels. os.Stderr is still the real standard error here.
	log := hclog.New(&hclog.LoggerOptions{Output: os.Stderr, JSONFormat: true, Level: hclog.Debug})
	defer func() {
		if err := b.Close(); err != nil {
			log.Error("closing the backend", "error", err)
		}
	}()
	go exitWithParent(log, os.Getppid(), time.Second)
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         goplugin.PluginSet{pluginName: &grpcPlugin{b: b, log: log}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			opts = append(opts, grpc.MaxRecvMsgSize(maxMessageBytes), grpc.MaxSendMsgSize(maxMessageBytes))
			return grpc.NewServer(opts...)
		},
		Logger: log,
	})
}

// exitWithParent exits the process once its parent, the host, is gone: the process is
// then re-parented, and its parent id changes. It polls because PR_SET_PDEATHSIG fires
// when the thread that forked exits, not the host process, and Go does not pin which
// thread forks.
func exitWithParent(log hclog.Logger, ppid int, every time.Duration) {
	for range time.Tick(every) {
		if os.Getppid() != ppid {
			log.Error("the host process is gone; exiting")
			os.Exit(1)
		}
	}
}

// server serves one backend.Backend over the contract.
type server struct {
	pb.UnimplementedBackendServer
	b   backend.Backend
	log hclog.Logger
}

func (s *server) Generate(req *pb.GenerateRequest, stream grpc.ServerStreamingServer[pb.GenerateEvent]) error {
	ctx := stream.Context()
	res, err := s.b.Generate(ctx, requestFromPB(req), func(delta string) error {
		return stream.Send(&pb.GenerateEvent{Event: &pb.GenerateEvent_Delta{Delta: &pb.Delta{Text: delta}}})
	})
	if ctx.Err() != nil {
		// The host cancelled the call or went away: nobody reads an answer.
		return status.FromContextError(ctx.Err()).Err()
	}
	if err != nil {
		return stream.Send(&pb.GenerateEvent{Event: &pb.GenerateEvent_Error{Error: errorToPB(err, s.log.Error)}})
	}
	return stream.Send(&pb.GenerateEvent{Event: &pb.GenerateEvent_Final{Final: resultToPB(res)}})
}

func (s *server) Models(ctx context.Context, _ *pb.ModelsRequest) (*pb.ModelsResponse, error) {
	ms, err := s.b.Models(ctx)
	if err != nil {
		return &pb.ModelsResponse{Error: errorToPB(err, s.log.Error)}, nil
	}
	return &pb.ModelsResponse{Models: modelsToPB(ms)}, nil
}

func (s *server) Health(ctx context.Context, _ *pb.HealthRequest) (*pb.HealthResponse, error) {
	if err := s.b.Health(ctx); err != nil {
		return &pb.HealthResponse{Error: errorToPB(err, s.log.Error)}, nil
	}
	return &pb.HealthResponse{}, nil
}
