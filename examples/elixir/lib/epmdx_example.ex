defmodule EpmdxExample do
  @moduledoc "Helpers to look at the node's connections from `bin/epmdx_example rpc`."

  @doc "Each connected node with the transport the adapter sees it on."
  def connections, do: :epmdx_select.connections()
end
