"""GE Datex-Ohmeda S/5 computer interface (AS/3, CS/3, S/5, CARESCAPE): codec and driver."""
