// Package contracts holds the compiled code of Cocoon's on-chain contracts: the escrow
// and the registry.
//
// The code is compiled from the Tolk sources in this directory by compile.mjs (`make
// contracts`) and committed, so Go builds need no Tolk toolchain; CI recompiles and
// checks that the committed bytes are what the sources give.
package contracts

import _ "embed"

// EscrowCode is the escrow contract's code cell (escrow.tolk, protocol v1 in
// settle/ESCROW.md) as a bag of cells: one root, no index, with a CRC32C checksum.
// Parse it with a BOC decoder (e.g. tonutils-go's cell.FromBOC); do not modify it.
//
//go:embed build/escrow.boc
var EscrowCode []byte

// RegistryCode is the registry contract's code cell (registry.tolk, protocol v1 in
// settle/REGISTRY.md), in the same BOC form as EscrowCode.
//
//go:embed build/registry.boc
var RegistryCode []byte
