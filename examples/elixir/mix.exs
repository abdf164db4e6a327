# An Elixir release whose node speaks TCP and TLS through epmdx, with the
# Erlang adapter's modules compiled into the application (no hex packages:
# `MIX_ENV=prod mix release` works offline). See docs/erlang.md, "Elixir".
defmodule EpmdxExample.MixProject do
  use Mix.Project

  # The adapter's sources; copy erlang/src here instead when this
  # directory lives outside the epmdx repository.
  @adapter Path.expand("../../erlang/src", __DIR__)

  def project do
    [
      app: :epmdx_example,
      version: "0.1.0",
      elixir: "~> 1.14",
      # Mix compiles every .erl in erlc_paths into the application, so the
      # EPMD and dist modules are in the release's code path before kernel
      # starts distribution.
      erlc_paths: [@adapter],
      erlc_include_path: @adapter,
      deps: [],
      releases: [epmdx_example: [include_executables_for: [:unix]]]
    ]
  end

  def application do
    # ssl: inet_tls_dist and its supervisor live there.
    [extra_applications: [:logger, :ssl]]
  end
end
