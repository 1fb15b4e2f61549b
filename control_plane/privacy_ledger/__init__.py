"""The per-dataset privacy ledger: budgets from the policy, run reservations, settlement."""

from control_plane.privacy_ledger.ledger import (
    BudgetStatement,
    LedgerState,
    PrivacyLedger,
    budget_for,
)
from control_plane.privacy_ledger.settlement import LedgerSettlement

__all__ = ["BudgetStatement", "LedgerSettlement", "LedgerState", "PrivacyLedger", "budget_for"]
