"""The stakeholder report: figures gathered once (:mod:`gather`), shown as HTML, CSV or JSON."""
