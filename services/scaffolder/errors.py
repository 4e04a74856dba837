"""Errors of the scaffolder. Their texts never contain a secret.

```
ScaffolderError              base of every scaffolder error
├── UnknownModuleError       a module the message names has no template
└── TemplateRenderError      copier could not render a template
```

Git failures are `shared.git.GitError`s; the handler turns both families into a failed
project and a failed result.
"""

from __future__ import annotations

__all__ = ["ScaffolderError", "TemplateRenderError", "UnknownModuleError"]


class ScaffolderError(Exception):
    """Base of every scaffolder error."""


class UnknownModuleError(ScaffolderError, ValueError):
    """A module named in the message has no template."""


class TemplateRenderError(ScaffolderError):
    """copier failed to render a template."""
