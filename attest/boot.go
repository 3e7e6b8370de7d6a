package attest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/attest/nvidia"
)

// sandboxPolicy is what the sandbox-policy event measures: the limits every module runs
// under and the environment it sees (SPEC.md §6-§8). Every number comes from package
// abi, the values the host's sandbox itself runs with, so the measured policy changes
// whenever the sandbox does; the strings describe what the sandbox does not make
// configurable at all.
type sandboxPolicy struct {
	Policy        string       `json:"policy"`
	ABIVersion    int          `json:"abi_version"`
	DefaultLimits abi.Limits   `json:"default_limits"`
	CeilingLimits abi.Limits   `json:"ceiling_limits"`
	FixedLimits   fixedLimits  `json:"fixed_limits"`
	UploadLimits  uploadLimits `json:"upload_limits"`
	Environment   environment  `json:"environment"`
}

// uploadLimits are the limits on a module's code checked at upload (SPEC.md §7.3).
type uploadLimits struct {
	FunctionBytes   int   `json:"function_bytes"`
	NestingDepth    int   `json:"nesting_depth"`
	Branches        int   `json:"branches_per_function"`
	FunctionLocals  int   `json:"locals_per_function"`
	LocalBranches   int64 `json:"locals_times_branches"`
	BlockTypeValues int   `json:"block_type_values"`
	ReadWork        int64 `json:"read_work"`
}

// fixedLimits are the limits of SPEC.md §7.2, the same for every module.
type fixedLimits struct {
	ModuleBytes        int   `json:"module_bytes"`
	ConfigBytes        int   `json:"config_bytes"`
	RejectMessageBytes int   `json:"reject_message_bytes"`
	MinInitTimeMS      int64 `json:"min_init_time_ms"`
	StageModules       int   `json:"modules_per_stage"`
	RequestMemoryBytes int   `json:"request_memory_bytes"`
	TableElementBytes  int   `json:"table_element_bytes"`
	RequestModuleMS    int64 `json:"request_module_time_ms"`
	RequestOutputBytes int   `json:"request_output_bytes_per_module"`
	LogRecords         int   `json:"log_records_per_module"`
	Tables             int   `json:"tables_per_module"`
	CallDepth          int   `json:"call_depth"`
	CallFrameLocals    int   `json:"call_frame_locals"`
}

// environment is what a module sees of the world (SPEC.md §6, §8).
type environment struct {
	ClockEpochUnix    int64    `json:"clock_epoch_unix"`
	ClockStepNS       int64    `json:"clock_step_ns"`
	ClockResolutionNS int64    `json:"clock_resolution_ns"`
	Random            string   `json:"random"`
	WASIFunctions     []string `json:"wasi_functions"`
	Arguments         string   `json:"arguments"`
	Files             string   `json:"files"`
	Network           string   `json:"network"`
	Sleep             string   `json:"sleep"`
	Instances         string   `json:"instances"`
}

// SandboxPolicy returns the canonical JSON of the sandbox policy, whose SHA-256 the
// sandbox-policy event measures:
//
//	{"policy":"cocoon-host sandbox policy v2","abi_version":1,
//	 "default_limits":{...abi.DefaultLimits...},"ceiling_limits":{...abi.CeilingLimits...},
//	 "fixed_limits":{"module_bytes":N,"config_bytes":N,"reject_message_bytes":N,"min_init_time_ms":N,
//	   "modules_per_stage":N,"request_memory_bytes":N,"table_element_bytes":N,"request_module_time_ms":N,
//	   "request_output_bytes_per_module":N,"log_records_per_module":N,"tables_per_module":N,
//	   "call_depth":N,"call_frame_locals":N},
//	 "upload_limits":{"function_bytes":N,"nesting_depth":N,"branches_per_function":N,
//	   "locals_per_function":N,"locals_times_branches":N,"block_type_values":N,"read_work":N},
//	 "environment":{"clock_epoch_unix":N,"clock_step_ns":N,"clock_resolution_ns":N,
//	   "random":"ChaCha8 seeded with sha256(<abi.RandomSeedText>)","wasi_functions":[names, sorted],
//	   "arguments":...,"files":...,"network":...,"sleep":...,"instances":...}}
//
// with members in this order, no whitespace, limits encoded as in a manifest
// (abi.Limits) and every other number from package abi. A reviewer recomputes the hash
// from a build of the same source.
func SandboxPolicy() []byte {
	b, err := json.Marshal(sandboxPolicy{
		Policy:        "cocoon-host sandbox policy v2",
		ABIVersion:    abi.Version,
		DefaultLimits: abi.DefaultLimits,
		CeilingLimits: abi.CeilingLimits,
		FixedLimits: fixedLimits{
			ModuleBytes:        abi.MaxModuleBytes,
			ConfigBytes:        abi.MaxConfigBytes,
			RejectMessageBytes: abi.MaxRejectMessageBytes,
			MinInitTimeMS:      abi.MinInitTimeout.Milliseconds(),
			StageModules:       abi.MaxStageModules,
			RequestMemoryBytes: abi.RequestMemoryBytes,
			TableElementBytes:  abi.TableElementBytes,
			RequestModuleMS:    abi.RequestModuleTime.Milliseconds(),
			RequestOutputBytes: abi.RequestOutputBytes,
			LogRecords:         abi.MaxLogRecords,
			Tables:             abi.MaxTables,
			CallDepth:          abi.MaxCallDepth,
			CallFrameLocals:    abi.CallFrameLocals,
		},
		UploadLimits: uploadLimits{
			FunctionBytes:   abi.MaxFunctionBytes,
			NestingDepth:    abi.MaxNestingDepth,
			Branches:        abi.MaxBranches,
			FunctionLocals:  abi.MaxFunctionLocals,
			LocalBranches:   abi.MaxLocalBranches,
			BlockTypeValues: abi.MaxBlockTypeValues,
			ReadWork:        abi.MaxReadWork,
		},
		Environment: environment{
			ClockEpochUnix:    abi.ClockEpochUnix,
			ClockStepNS:       abi.ClockStep.Nanoseconds(),
			ClockResolutionNS: abi.ClockResolution.Nanoseconds(),
			Random:            fmt.Sprintf("ChaCha8 seeded with sha256(%q)", abi.RandomSeedText),
			WASIFunctions:     slices.Sorted(maps.Keys(abi.WASIFunctions)),
			Arguments:         "none: no arguments, no environment variables, stdin at its end",
			Files:             "none: no files, no pre-opened directories",
			Network:           "none",
			Sleep:             "none: poll_oneoff and sched_yield return at once",
			Instances:         "fresh per request",
		},
	})
	if err != nil {
		panic("attest: sandbox policy: " + err.Error()) // plain strings and integers
	}
	return b
}

// Host holds what a host process attests: its in-memory keys, the provider, the runtime
// event log (sealed), and the boot quote. Boot creates it; it is safe for concurrent use.
type Host struct {
	provider Provider
	// gpu obtains the GPU reports served with every quote (NoGPU for none).
	gpu GPUProvider
	// gpus are the identities the gpus event measured, in the order gpu serves them.
	gpus      []GPUIdentity
	bootGPUs  []nvidia.Evidence // the GPU reports over the boot quote's GPU nonce
	log       *Log
	signKey   ed25519.PrivateKey
	tlsKey    *ecdsa.PrivateKey
	tlsSPKI   []byte
	eventLog  []byte // EncodeEventLog of the sealed log
	bootQuote []byte
	e2e       *hostE2E
}

// Boot measures the host into p's RTMR3 and takes the boot quote. It appends, in order,
// the SHA-256 of the running executable (ExecutableSHA256), abi.Version, the
// SHA-256 of SandboxPolicy, backend and model (see BackendEvent and ModelEvent), the
// gpus event saying it attests no GPU (BootWithGPUs attests them), then the extra events (the SealingEvent, and a billing host's SettlementKeyEvent and
// SettlementKeyOriginEvent, in the documented order VerifyLog enforces), then seals
// the log. It then generates the host's ed25519 signing key and its TLS key (ECDSA
// P-256), which never leave memory, and quotes BootReportData(signing key, TLS key's
// SubjectPublicKeyInfo, log replay).
//
// Cost: hashing the executable (tens of ms for a large binary) and one quote. It fails
// when a measurement cannot be taken, an event is invalid (empty or over-long backend or
// model text), the extra events are not in the documented order, the register refuses an extension (the host must then not serve: its
// RTMR3 no longer replays) or the quote fails. Boot runs once per process: on TDX a
// second Boot would extend RTMR3 past a sealed log.
func Boot(ctx context.Context, p Provider, backend, model string, extra ...Event) (*Host, error) {
	return BootWithGPUs(ctx, p, NoGPU{}, backend, model, extra...)
}

// BootWithGPUs is Boot for a host that attests its GPUs through gpu (Boot passes
// NoGPU): before the extra events it measures the gpus event (GPUsEvent) with the
// identity of every GPU gpu reports, read from a report over a random nonce; after the
// boot quote it takes each GPU's report over GPUNonce of the boot quote's REPORTDATA,
// which the boot evidence serves. Every later quote (FreshBootEvidence,
// PipelineEvidence) is served with reports taken over its own REPORTDATA's GPU nonce.
//
// Cost: Boot's, and two reports of each GPU. It fails as Boot does, when gpu fails or
// a report does not parse, and when the GPUs the second time are not those measured.
func BootWithGPUs(ctx context.Context, p Provider, gpu GPUProvider, backend, model string, extra ...Event) (*Host, error) {
	exe, err := ExecutableSHA256()
	if err != nil {
		return nil, fmt.Errorf("attest: measure the host binary: %w", err)
	}
	log := NewLog(p.RTMR3())
	events := []Event{HostBinaryEvent(exe), ABIVersionEvent(abi.Version),
		SandboxPolicyEvent(sha256.Sum256(SandboxPolicy())), BackendEvent(backend), ModelEvent(model)}
	var nonce [32]byte
	rand.Read(nonce[:]) // crypto/rand.Read never fails.
	gpus, err := gpuIdentities(ctx, gpu, nonce)
	if err != nil {
		return nil, err
	}
	events = append(append(append(events, GPUsEvent(gpus)), extra...), SealEvent())
	// Check the whole log first, so that a bad backend or model text, or extra events
	// out of the documented order, fail before RTMR3 is extended at all.
	if err := checkSequence(events, true); err != nil {
		return nil, fmt.Errorf("attest: %w", err)
	}
	for _, e := range events {
		if err := log.Append(e); err != nil {
			return nil, fmt.Errorf("attest: %w", err)
		}
	}
	h := &Host{provider: p, gpu: gpu, gpus: gpus, log: log}
	if h.eventLog, err = EncodeEventLog(log.Events()); err != nil {
		return nil, fmt.Errorf("attest: %w", err)
	}
	pub, signKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("attest: host key: %w", err)
	}
	h.signKey = signKey
	if h.tlsKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, fmt.Errorf("attest: TLS key: %w", err)
	}
	if h.tlsSPKI, err = x509.MarshalPKIXPublicKey(&h.tlsKey.PublicKey); err != nil {
		return nil, fmt.Errorf("attest: TLS key: %w", err)
	}
	if h.e2e, err = newHostE2E(signKey); err != nil {
		return nil, fmt.Errorf("attest: %w", err)
	}
	rd, err := BootReportData(pub, h.tlsSPKI, log.Digest())
	if err != nil {
		return nil, fmt.Errorf("attest: %w", err)
	}
	if h.bootQuote, err = p.Quote(ctx, rd); err != nil {
		return nil, fmt.Errorf("attest: boot quote: %w", err)
	}
	if h.bootGPUs, err = h.gpuEvidence(ctx, rd); err != nil {
		return nil, err
	}
	return h, nil
}

// gpuIdentities asks gpu for its GPUs' reports over nonce and reads their identities.
func gpuIdentities(ctx context.Context, gpu GPUProvider, nonce [32]byte) ([]GPUIdentity, error) {
	evs, err := gpu.Evidence(ctx, nonce)
	if err != nil {
		return nil, fmt.Errorf("attest: GPU evidence (--gpu %s): %w", gpu.Mode(), err)
	}
	if len(evs) > maxGPUs {
		return nil, fmt.Errorf("attest: %d GPUs, at most %d are attested", len(evs), maxGPUs)
	}
	ids := make([]GPUIdentity, len(evs))
	for i, ev := range evs {
		if ids[i], err = readGPUIdentity(ev); err != nil {
			return nil, fmt.Errorf("attest: GPU %d's report (--gpu %s): %w", i, gpu.Mode(), err)
		}
	}
	return ids, nil
}

// gpuEvidence returns the GPU reports to serve with a quote over rd: each over
// GPUNonce(rd), from the GPUs the event log measured, in order. It fails when a GPU is
// gone or another one answers (a changed chain, driver or mode), which the host must
// not serve as the measured one. Nil for a host without GPUs.
func (h *Host) gpuEvidence(ctx context.Context, rd [64]byte) ([]nvidia.Evidence, error) {
	evs, err := h.gpu.Evidence(ctx, GPUNonce(rd))
	if err != nil {
		return nil, fmt.Errorf("attest: GPU evidence (--gpu %s): %w", h.gpu.Mode(), err)
	}
	if len(evs) != len(h.gpus) {
		return nil, fmt.Errorf("attest: %d GPUs answer, the event log measured %d", len(evs), len(h.gpus))
	}
	for i, ev := range evs {
		id, err := readGPUIdentity(ev)
		if err != nil {
			return nil, fmt.Errorf("attest: GPU %d's report: %w", i, err)
		}
		if id != h.gpus[i] {
			return nil, fmt.Errorf("attest: GPU %d is now %s, the event log measured %s", i, id, h.gpus[i])
		}
	}
	return evs, nil
}

// ExecutableSHA256 returns the SHA-256 of the running executable: the value Boot
// measures into the host-binary event, and `cocoon-host --version` prints. On Linux it
// reads the file os.Executable names as the process opened it, through /proc/self/exe,
// so a binary replaced or removed at its path after the start does not change the
// measurement (opening os.Executable's path would then read the replacement);
// elsewhere, the file at os.Executable's path.
//
// Cost: one read of the whole binary (tens of ms for a 30 MiB host). It fails when the
// executable cannot be found or read.
func ExecutableSHA256() ([32]byte, error) {
	path := "/proc/self/exe"
	if runtime.GOOS != "linux" {
		var err error
		if path, err = os.Executable(); err != nil {
			return [32]byte{}, err
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return [32]byte{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return [32]byte{}, err
	}
	return [32]byte(h.Sum(nil)), nil
}

// Mode returns the provider's mode: ModeTDX or ModeSim.
func (h *Host) Mode() string { return h.provider.Mode() }

// PublicKey returns the host's ed25519 public key, which signs responses.
func (h *Host) PublicKey() ed25519.PublicKey { return h.signKey.Public().(ed25519.PublicKey) }

// TLSKey returns the host's TLS private key, whose public key the boot quote binds.
func (h *Host) TLSKey() crypto.Signer { return h.tlsKey }

// Events returns the sealed runtime event log.
func (h *Host) Events() []Event { return h.log.Events() }

// BootEvidence returns the boot evidence: the boot quote, the event log and the keys. It
// costs nothing: the quote was taken by Boot.
func (h *Host) BootEvidence() Evidence {
	return Evidence{Mode: h.Mode(), Quote: h.bootQuote, EventLog: h.eventLog, HostKey: h.PublicKey(), TLSKey: h.tlsSPKI, GPUs: h.bootGPUs,
		E2EKeys: h.e2e.evidence()}
}

// FreshBootEvidence returns boot evidence quoted anew for a client's nonce: the event
// log and keys of BootEvidence, the nonce, and a fresh quote over
// FreshBootReportData(nonce, host key, TLS key, log replay). It shows that this
// process runs now, which the boot quote alone cannot: a stopped or copied host serves
// the same boot quote. It takes one quote, which is slow on TDX: callers rate-limit it.
// It fails with ErrReportDataInput for a nonce out of [MinNonceBytes, MaxNonceBytes],
// or when the quote fails.
func (h *Host) FreshBootEvidence(ctx context.Context, nonce []byte) (Evidence, error) {
	rd, err := FreshBootReportData(nonce, h.PublicKey(), h.tlsSPKI, h.log.Digest())
	if err != nil {
		return Evidence{}, err
	}
	return h.quoted(ctx, rd, nonce, "fresh boot")
}

// quoted returns the boot evidence's log and keys with a fresh quote over rd and the
// client's nonce; what names the quote in its error.
//
// The GPUs are asked for their reports while the quote is taken: both need only rd.
func (h *Host) quoted(ctx context.Context, rd [64]byte, nonce []byte, what string) (Evidence, error) {
	var gpus []nvidia.Evidence
	var gpuErr error
	asked := make(chan struct{})
	go func() { // joined below, on every path
		defer close(asked)
		gpus, gpuErr = h.gpuEvidence(ctx, rd)
	}()
	quote, err := h.provider.Quote(ctx, rd)
	<-asked
	if err != nil {
		return Evidence{}, fmt.Errorf("attest: %s quote: %w", what, err)
	}
	if gpuErr != nil {
		return Evidence{}, gpuErr
	}
	e := h.BootEvidence()
	e.Quote, e.Nonce, e.GPUs = quote, bytes.Clone(nonce), gpus
	return e, nil
}

// PipelineEvidence returns pipeline evidence for a client's nonce and a pipeline's
// canonical manifest: a fresh quote over PipelineReportData(nonce, sha256(manifest),
// host key), with the event log and keys. It takes one quote, which is slow on TDX:
// callers rate-limit it. It fails with ErrReportDataInput for a nonce out of
// [MinNonceBytes, MaxNonceBytes], or when the quote fails.
func (h *Host) PipelineEvidence(ctx context.Context, nonce, manifest []byte) (Evidence, error) {
	hash := ManifestHash(manifest)
	rd, err := PipelineReportData(nonce, hash, h.PublicKey())
	if err != nil {
		return Evidence{}, err
	}
	e, err := h.quoted(ctx, rd, nonce, "pipeline")
	if err != nil {
		return Evidence{}, err
	}
	e.PipelineID = fmt.Sprintf("%x", hash)
	e.Manifest = append(json.RawMessage(nil), manifest...)
	return e, nil
}

// SignResponse signs r with the host key and returns the value of
// ResponseSignatureHeader: "ed25519=" and the standard base64 of the signature. It
// costs one ed25519 signature (tens of µs).
func (h *Host) SignResponse(r SignedResponse) string {
	return "ed25519=" + base64.StdEncoding.EncodeToString(r.Sign(h.signKey))
}
