package settle

// AccountView is what GET /v1/accounts/{account} answers: amounts in nanoTON, as
// strings so that JavaScript reads them exactly.
type AccountView struct {
	Account    string `json:"account"`
	LastSeq    uint64 `json:"last_seq"`
	Cumulative uint64 `json:"cumulative,string"`
	Held       uint64 `json:"held,string"`
	Settled    uint64 `json:"settled,string"`
	Deposited  uint64 `json:"deposited,string"`
	// Unspent is what the client may still spend: the deposit less the cumulative
	// total and the requests in flight.
	Unspent uint64 `json:"unspent,string"`
	Closing bool   `json:"closing"`
}
