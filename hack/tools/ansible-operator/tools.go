//go:build tools

// Package tools pins the ansible-operator binary that runs this operator.
package tools

import _ "github.com/operator-framework/ansible-operator-plugins/cmd/ansible-operator"
