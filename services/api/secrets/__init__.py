"""Project secrets: names the owner lists, values stored encrypted and never read back."""
