package billing

import (
	"github.com/cocoonhost/cocoon/settle"

	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts what billing and settlement do, for an operator's Prometheus: the
// admissions and their refusals, the receipts and what they charged, and the settler's
// rounds. One Metrics is shared by a host's Service and Settler (Config.Metrics,
// SettlerConfig.Metrics) and served by the Service's Collectors. Every labelled series
// starts at zero, so that a dashboard or an alert sees it before its first event.
// Counting costs an atomic add.
type Metrics struct {
	admissions  *prometheus.CounterVec // result: admitted, or the refusal's code
	receipts    *prometheus.CounterVec // status
	charged     prometheus.Counter     // nanoTON
	rounds      *prometheus.CounterVec // result: ok, failed
	chargesSent prometheus.Counter
	lastRound   prometheus.Gauge // unix seconds of the last round that did not fail
}

// admissionCodes are the results an admission counts under besides "admitted": the
// codes of Admit's refusals, and "error" for a failure without one (the escrow could
// not be read).
var admissionCodes = []string{settle.CodeBadSignature, settle.CodeInsufficient, settle.CodeUnknownAccount, settle.CodeClosing, settle.CodeInProgress,
	settle.CodeIdempotencyMismatch, settle.CodeUnavailable, settle.CodeIntegrity, settle.CodeReplay, settle.CodeMaxPrice, settle.CodeUnpricedModel, "error"}

// NewMetrics returns a Metrics with every series at zero.
func NewMetrics() *Metrics {
	m := &Metrics{
		admissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cocoon_billing_admissions_total", Help: "Billed requests admitted against an escrow's balance, or refused (result: the refusal's code).",
		}, []string{"result"}),
		receipts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cocoon_billing_receipts_total", Help: "Receipts committed to the ledger, by status (completed, failed, cancelled).",
		}, []string{"status"}),
		charged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cocoon_billing_charged_nanoton_total", Help: "What the committed receipts charged, in nanoTON.",
		}),
		rounds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cocoon_settlement_rounds_total", Help: "Settler rounds, by result: ok, or failed (deferred to the next round, such as when the chain is unreachable).",
		}, []string{"result"}),
		chargesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cocoon_settlement_charges_sent_total", Help: "Charge messages the settler sent to escrows.",
		}),
		lastRound: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cocoon_settlement_last_success_timestamp_seconds", Help: "Unix time of the settler's last round that did not fail; 0 before the first.",
		}),
	}
	m.admissions.WithLabelValues("admitted")
	for _, code := range admissionCodes {
		m.admissions.WithLabelValues(code)
	}
	for _, status := range []string{settle.StatusCompleted, settle.StatusFailed, settle.StatusCancelled} {
		m.receipts.WithLabelValues(status)
	}
	m.rounds.WithLabelValues("ok")
	m.rounds.WithLabelValues("failed")
	return m
}

// collectors are the metrics to register.
func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.admissions, m.receipts, m.charged, m.rounds, m.chargesSent, m.lastRound}
}

// admitted counts an admission's result.
func (m *Metrics) admitted(err error) {
	var e *Error
	switch {
	case err == nil:
		m.admissions.WithLabelValues("admitted").Inc()
	case errors.As(err, &e):
		m.admissions.WithLabelValues(e.Code).Inc()
	default:
		m.admissions.WithLabelValues("error").Inc()
	}
}

// committed counts a receipt committed to the ledger.
func (m *Metrics) committed(r *settle.Receipt) {
	m.receipts.WithLabelValues(r.Status).Inc()
	m.charged.Add(float64(r.Cost))
}

// settled counts a settler round that sent sent charges and ended with err at now.
func (m *Metrics) settled(sent int, err error, now time.Time) {
	m.chargesSent.Add(float64(sent))
	if err != nil {
		m.rounds.WithLabelValues("failed").Inc()
		return
	}
	m.rounds.WithLabelValues("ok").Inc()
	m.lastRound.Set(float64(now.Unix()))
}
