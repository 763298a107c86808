"""The synthetic toy world of coloured shapes the micro cascade is trained and measured on."""
