"""tumorburden: whole-body tumour burden, burden kinetics and survival from trial CT scans."""

__version__ = "0.1.0"
